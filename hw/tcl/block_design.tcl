# taper: the block design of the overlay.
#
#   PS7 M_AXI_GP0 -> ctrl_interconnect -> axi_dma/S_AXI_LITE   (taper_dma_base, 64 KiB)
#                                      -> accel/s_axil         (taper_shell_base, 64 KiB)
#   axi_dma/M_AXIS_MM2S -> accel/s_axis,  accel/m_axis -> axi_dma/S_AXIS_S2MM
#   axi_dma/M_AXI_MM2S, M_AXI_S2MM -> mem_smartconnect -> PS7 S_AXI_HP0 -> DDR
#   PS7 FCLK_CLK0 (taper_fclk_mhz) clocks everything; fabric_reset (proc_sys_reset) from
#   FCLK_RESET0_N resets it.
#
# The PS: when Vivado has the board's files (taper_board_part), the board's own preset;
# otherwise taper_ps7_table (settings.tcl), the PS7 values of the board as PYNQ's base designs
# set them (DDR3, MIO peripherals, bank voltages, clocks). reports/ps_config.txt says which.

set proj_dir [file join $taper_work $taper_name]
create_project -force $taper_name $proj_dir -part $taper_part

set taper_ps_config table
if {[lsearch -exact [get_board_parts -quiet] $taper_board_part] >= 0} {
    set_property board_part $taper_board_part [current_project]
    set taper_ps_config board_part
}
set fh [open [file join $taper_reports ps_config.txt] w]
if {$taper_ps_config eq "board_part"} {
    puts $fh "board_part $taper_board_part"
} else {
    puts $fh "table $taper_board"
}
close $fh

set_property ip_repo_paths [list $taper_ip_dir] [current_project]
update_ip_catalog

# The newest version of an IP in the catalog (the designs use nothing version-specific).
proc taper_vlnv {prefix} {
    set defs [get_ipdefs -all -filter [format {VLNV =~ "%s:*"} $prefix]]
    if {[llength $defs] == 0} {
        error "taper: IP $prefix is not in Vivado's IP catalog"
    }
    return [lindex [lsort -dictionary $defs] end]
}

create_bd_design $taper_bd

# -- processing system
set ps [create_bd_cell -type ip -vlnv [taper_vlnv xilinx.com:ip:processing_system7] ps7]
if {$taper_ps_config eq "board_part"} {
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
        -config {make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"} $ps
} else {
    set_property -dict $taper_ps7_table $ps
    create_bd_intf_port -mode Master -vlnv xilinx.com:interface:ddrx_rtl:1.0 DDR
    create_bd_intf_port -mode Master -vlnv xilinx.com:display_processing_system7:fixedio_rtl:1.0 FIXED_IO
    connect_bd_intf_net [get_bd_intf_ports DDR] [get_bd_intf_pins ps7/DDR]
    connect_bd_intf_net [get_bd_intf_ports FIXED_IO] [get_bd_intf_pins ps7/FIXED_IO]
}
set_property -dict [list \
    CONFIG.PCW_USE_M_AXI_GP0 1 \
    CONFIG.PCW_USE_S_AXI_HP0 1 \
    CONFIG.PCW_S_AXI_HP0_DATA_WIDTH 64 \
    CONFIG.PCW_EN_CLK0_PORT 1 \
    CONFIG.PCW_EN_RST0_PORT 1 \
    CONFIG.PCW_FPGA_FCLK0_ENABLE 1 \
    CONFIG.PCW_FCLK0_PERIPHERAL_CLKSRC {IO PLL} \
    CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ $taper_fclk_mhz \
] $ps
set act [get_property CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ $ps]
if {![string is double -strict $act] || abs($act - $taper_fclk_mhz) > 0.001 * $taper_fclk_mhz} {
    error "taper: the PS makes FCLK0 at $act MHz, not the $taper_fclk_mhz MHz asked for"
}

# -- DMA: simple mode (no scatter-gather), one MM2S and one S2MM channel at the shell's widths
set dma [create_bd_cell -type ip -vlnv [taper_vlnv xilinx.com:ip:axi_dma] axi_dma]
set_property -dict [list \
    CONFIG.c_include_sg 0 \
    CONFIG.c_sg_include_stscntrl_strm 0 \
    CONFIG.c_sg_length_width $taper_dma_length_bits \
    CONFIG.c_addr_width 32 \
    CONFIG.c_include_mm2s 1 \
    CONFIG.c_include_s2mm 1 \
    CONFIG.c_m_axis_mm2s_tdata_width [expr {8 * $taper_in_bytes}] \
    CONFIG.c_s_axis_s2mm_tdata_width [expr {8 * $taper_out_bytes}] \
    CONFIG.c_m_axi_mm2s_data_width $taper_mm2s_mm_bits \
    CONFIG.c_m_axi_s2mm_data_width $taper_s2mm_mm_bits \
] $dma

# -- the accelerator
set accel [create_bd_cell -type ip \
    -vlnv [taper_vlnv $taper_ip_vendor:$taper_ip_library:$taper_shell] accel]

# -- interconnects and reset
set ctrl [create_bd_cell -type ip -vlnv [taper_vlnv xilinx.com:ip:axi_interconnect] ctrl_interconnect]
set_property -dict [list CONFIG.NUM_SI 1 CONFIG.NUM_MI 2] $ctrl
set mem [create_bd_cell -type ip -vlnv [taper_vlnv xilinx.com:ip:smartconnect] mem_smartconnect]
set_property -dict [list CONFIG.NUM_SI 2 CONFIG.NUM_MI 1] $mem
set rst [create_bd_cell -type ip -vlnv [taper_vlnv xilinx.com:ip:proc_sys_reset] fabric_reset]

connect_bd_intf_net [get_bd_intf_pins ps7/M_AXI_GP0] [get_bd_intf_pins ctrl_interconnect/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins ctrl_interconnect/M00_AXI] [get_bd_intf_pins axi_dma/S_AXI_LITE]
connect_bd_intf_net [get_bd_intf_pins ctrl_interconnect/M01_AXI] [get_bd_intf_pins accel/s_axil]
connect_bd_intf_net [get_bd_intf_pins axi_dma/M_AXIS_MM2S] [get_bd_intf_pins accel/s_axis]
connect_bd_intf_net [get_bd_intf_pins accel/m_axis] [get_bd_intf_pins axi_dma/S_AXIS_S2MM]
connect_bd_intf_net [get_bd_intf_pins axi_dma/M_AXI_MM2S] [get_bd_intf_pins mem_smartconnect/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins axi_dma/M_AXI_S2MM] [get_bd_intf_pins mem_smartconnect/S01_AXI]
connect_bd_intf_net [get_bd_intf_pins mem_smartconnect/M00_AXI] [get_bd_intf_pins ps7/S_AXI_HP0]

connect_bd_net [get_bd_pins ps7/FCLK_CLK0] \
    [get_bd_pins ps7/M_AXI_GP0_ACLK] [get_bd_pins ps7/S_AXI_HP0_ACLK] \
    [get_bd_pins axi_dma/s_axi_lite_aclk] [get_bd_pins axi_dma/m_axi_mm2s_aclk] \
    [get_bd_pins axi_dma/m_axi_s2mm_aclk] [get_bd_pins accel/clk] \
    [get_bd_pins ctrl_interconnect/ACLK] [get_bd_pins ctrl_interconnect/S00_ACLK] \
    [get_bd_pins ctrl_interconnect/M00_ACLK] [get_bd_pins ctrl_interconnect/M01_ACLK] \
    [get_bd_pins mem_smartconnect/aclk] [get_bd_pins fabric_reset/slowest_sync_clk]
connect_bd_net [get_bd_pins ps7/FCLK_RESET0_N] [get_bd_pins fabric_reset/ext_reset_in]
connect_bd_net [get_bd_pins fabric_reset/peripheral_aresetn] \
    [get_bd_pins axi_dma/axi_resetn] [get_bd_pins accel/rst_n] \
    [get_bd_pins mem_smartconnect/aresetn] [get_bd_pins ctrl_interconnect/S00_ARESETN] \
    [get_bd_pins ctrl_interconnect/M00_ARESETN] [get_bd_pins ctrl_interconnect/M01_ARESETN]
connect_bd_net [get_bd_pins fabric_reset/interconnect_aresetn] \
    [get_bd_pins ctrl_interconnect/ARESETN]

# -- addresses: the two register blocks where taper's driver looks; the DMA's masters see DDR
set ps_data [get_bd_addr_spaces ps7/Data]
assign_bd_address -target_address_space $ps_data -offset $taper_dma_base -range 64K \
    [get_bd_addr_segs axi_dma/S_AXI_LITE/Reg]
assign_bd_address -target_address_space $ps_data -offset $taper_shell_base -range 64K \
    [get_bd_addr_segs accel/s_axil/regs]
assign_bd_address

validate_bd_design
save_bd_design

set bd_file [get_files ${taper_bd}.bd]
generate_target all $bd_file
add_files -norecurse [make_wrapper -files $bd_file -top]
set_property top ${taper_bd}_wrapper [current_fileset]
update_compile_order -fileset sources_1
