# taper: package the accelerator shell as an IP, with exactly the shell's contract:
#   clk    clock, FREQ_HZ = the fabric clock (tolerance open: FCLK0's exact rate is the PS's)
#   rst_n  reset, active low, synchronous to clk
#   s_axis AXI4-Stream slave  (TDATA TVALID TREADY TLAST), 8 * taper_in_bytes bits
#   m_axis AXI4-Stream master (TDATA TVALID TREADY TLAST TKEEP), 8 * taper_out_bytes bits
#   s_axil AXI4-Lite slave, 8-bit addresses (registers 0x00..0x24) in a 4 KiB block "regs"
# Whatever interfaces the packager infers on its own are removed first, so the IP has these
# and only these whatever the Vivado version infers.

set pkg_dir [file join $taper_work pkg]
file delete -force $pkg_dir $taper_ip_dir
create_project -force taper_pkg $pkg_dir -part $taper_part

set sources {}
foreach f [concat $taper_rtl_files $taper_mem_files] {
    lappend sources [file join $taper_dir rtl $f]
}
add_files -norecurse $sources
set_property top $taper_shell [current_fileset]
update_compile_order -fileset sources_1

ipx::package_project -root_dir $taper_ip_dir -vendor $taper_ip_vendor \
    -library $taper_ip_library -taxonomy /taper -import_files -set_current true
set core [ipx::current_core]
set_property name $taper_shell $core
set_property version $taper_ip_version $core
set_property display_name $taper_shell $core
set_property description "taper accelerator shell $taper_shell" $core

foreach bi [ipx::get_bus_interfaces -of_objects $core] {
    ipx::remove_bus_interface [get_property NAME $bi] $core
}
foreach mm [ipx::get_memory_maps -of_objects $core] {
    ipx::remove_memory_map [get_property NAME $mm] $core
}

# A bus interface from logical -> physical port pairs; the abstraction is the bus's "_rtl" twin.
proc taper_bus_interface {core name mode bus ports} {
    set bi [ipx::add_bus_interface $name $core]
    set_property bus_type_vlnv $bus $bi
    set_property abstraction_type_vlnv [regsub {:([^:]+):([^:]+)$} $bus {:\1_rtl:\2}] $bi
    set_property interface_mode $mode $bi
    foreach {logical physical} $ports {
        set_property physical_name $physical [ipx::add_port_map $logical $bi]
    }
    return $bi
}

taper_bus_interface $core s_axis slave xilinx.com:interface:axis:1.0 {
    TDATA s_axis_tdata TVALID s_axis_tvalid TREADY s_axis_tready TLAST s_axis_tlast
}
taper_bus_interface $core m_axis master xilinx.com:interface:axis:1.0 {
    TDATA m_axis_tdata TVALID m_axis_tvalid TREADY m_axis_tready TLAST m_axis_tlast
    TKEEP m_axis_tkeep
}
set axil [taper_bus_interface $core s_axil slave xilinx.com:interface:aximm:1.0 {
    AWADDR s_axil_awaddr AWVALID s_axil_awvalid AWREADY s_axil_awready
    WDATA s_axil_wdata WSTRB s_axil_wstrb WVALID s_axil_wvalid WREADY s_axil_wready
    BRESP s_axil_bresp BVALID s_axil_bvalid BREADY s_axil_bready
    ARADDR s_axil_araddr ARVALID s_axil_arvalid ARREADY s_axil_arready
    RDATA s_axil_rdata RRESP s_axil_rresp RVALID s_axil_rvalid RREADY s_axil_rready
}]
set rst [taper_bus_interface $core rst_n slave xilinx.com:signal:reset:1.0 {RST rst_n}]
set clk [taper_bus_interface $core clk slave xilinx.com:signal:clock:1.0 {CLK clk}]

set p [ipx::add_bus_parameter POLARITY $rst]
set_property value ACTIVE_LOW $p
ipx::associate_bus_interfaces -busif s_axis -clock clk $core
ipx::associate_bus_interfaces -busif m_axis -clock clk $core
ipx::associate_bus_interfaces -busif s_axil -clock clk $core
ipx::associate_bus_interfaces -clock clk -reset rst_n $core
set p [ipx::add_bus_parameter FREQ_HZ $clk]
set_property value $taper_fclk_hz $p
set p [ipx::add_bus_parameter FREQ_TOLERANCE_HZ $clk]
set_property value -1 $p

set mm [ipx::add_memory_map s_axil $core]
set_property slave_memory_map_ref s_axil $axil
set block [ipx::add_address_block regs $mm]
set_property range 4096 $block
set_property width 32 $block
set_property usage register $block

# The weight and threshold memories ($readmemh) belong to the IP's synthesis files; the
# packager imports them with the sources, and any it left out are added here.
set fg [ipx::get_file_groups xilinx_anylanguagesynthesis -of_objects $core]
foreach f $taper_mem_files {
    if {[llength [ipx::get_files -quiet -of_objects $fg *$f]] == 0} {
        file mkdir [file join $taper_ip_dir src]
        file copy -force [file join $taper_dir rtl $f] [file join $taper_ip_dir src $f]
        ipx::add_file src/$f $fg
        set_property type mem [ipx::get_files -of_objects $fg src/$f]
    }
}

ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::check_integrity $core
ipx::save_core $core
close_project
