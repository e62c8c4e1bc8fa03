# taper: the Vivado build of a PYNQ overlay (Zynq-7000 PS, AXI DMA, the accelerator shell).
#
#     cd <this directory> && vivado -mode batch -source build.tcl
#
# settings.tcl, written by taper next to this file, sets every value the steps use: sanitized
# identifiers, numbers, file names of the form <identifier>.<extension>, and constants from
# taper's board table. The steps take no other input (TAPER_VIVADO_JOBS may set the number of
# parallel runs). Steps:
#   tcl/package_ip.tcl    the shell as an IP (AXI-Stream in/out, AXI-Lite registers, clock, reset)
#   tcl/block_design.tcl  PS7 with the board's preset, AXI DMA, interconnects, reset, addresses
#   tcl/implement.tcl     synthesis, implementation, bitstream, .hwh, reports
# Writes output/<name>.bit and output/<name>.hwh (what pynq.Overlay loads) and reports/.
# Needs Vivado 2020.1 or newer (assign_bd_address with -target_address_space).

set taper_dir [file dirname [file normalize [info script]]]
source [file join $taper_dir settings.tcl]

set taper_work [file join $taper_dir work]
set taper_ip_dir [file join $taper_work ip]
set taper_reports [file join $taper_dir reports]
set taper_output [file join $taper_dir output]

set taper_jobs 4
if {[info exists ::env(TAPER_VIVADO_JOBS)]} {
    set j $::env(TAPER_VIVADO_JOBS)
    if {[string is integer -strict $j] && $j > 0} {
        set taper_jobs $j
    }
}

# Every run starts afresh; results of an earlier run must not pass for this one's.
file delete -force $taper_work $taper_reports $taper_output
file mkdir $taper_work $taper_reports $taper_output

source [file join $taper_dir tcl package_ip.tcl]
source [file join $taper_dir tcl block_design.tcl]
source [file join $taper_dir tcl implement.tcl]
puts "taper: wrote [file join $taper_output ${taper_name}.bit] and ${taper_name}.hwh"
