# taper: synthesis, implementation, bitstream, the hardware handoff, reports.
#
# reports/utilization.rpt       report_utilization of the routed design (LUT, FF, BRAM, DSP)
# reports/utilization_hier.rpt  the same per instance (the accelerator is instance "accel")
# reports/timing_summary.rpt    report_timing_summary (WNS; clk_fpga_0 is the fabric clock)
# output/<name>.bit, output/<name>.hwh
#
# The .hwh is the block design's hardware handoff, written by generate_target: Vivado 2020.2
# and newer put it under <project>.gen/sources_1/bd/<bd>/hw_handoff/, older ones under
# <project>.srcs/...; any other place under the project is searched as well.

proc taper_run {run args} {
    launch_runs $run {*}$args
    wait_on_run $run
    set r [get_runs $run]
    if {[get_property PROGRESS $r] ne "100%"} {
        error "taper: $run failed: [get_property STATUS $r]"
    }
}

# The first file called $name below $dir (depth first, sorted).
proc taper_find_file {dir name} {
    foreach f [lsort [glob -nocomplain -directory $dir *]] {
        if {[file isdirectory $f]} {
            set found [taper_find_file $f $name]
            if {$found ne ""} {
                return $found
            }
        } elseif {[file tail $f] eq $name} {
            return $f
        }
    }
    return ""
}

proc taper_find_hwh {proj_dir proj bd} {
    foreach tree [list ${proj}.gen ${proj}.srcs] {
        set f [file join $proj_dir $tree sources_1 bd $bd hw_handoff ${bd}.hwh]
        if {[file isfile $f]} {
            return $f
        }
    }
    return [taper_find_file $proj_dir ${bd}.hwh]
}

# Copy under a temporary name, then rename: a reader never sees half a file.
proc taper_publish {src dst} {
    file copy -force $src ${dst}.partial
    file rename -force ${dst}.partial $dst
}

taper_run synth_1 -jobs $taper_jobs
taper_run impl_1 -to_step write_bitstream -jobs $taper_jobs
open_run impl_1

report_utilization -file [file join $taper_reports utilization.rpt]
report_utilization -hierarchical -file [file join $taper_reports utilization_hier.rpt]
report_timing_summary -max_paths 10 -file [file join $taper_reports timing_summary.rpt]

set bits [lsort [glob -nocomplain -directory [get_property DIRECTORY [get_runs impl_1]] *.bit]]
if {[llength $bits] == 0} {
    error "taper: impl_1 finished but wrote no .bit"
}
set hwh [taper_find_hwh $proj_dir $taper_name $taper_bd]
if {$hwh eq ""} {
    error "taper: no ${taper_bd}.hwh under $proj_dir (the block design's hardware handoff)"
}
taper_publish [lindex $bits 0] [file join $taper_output ${taper_name}.bit]
taper_publish $hwh [file join $taper_output ${taper_name}.hwh]
