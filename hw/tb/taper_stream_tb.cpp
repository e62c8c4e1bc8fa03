// taper single-stream testbench for Verilator: drives one AXI-stream-like unit (s_tdata,
// s_tvalid, s_tready -> m_tdata, m_tvalid, m_tready; clk, active-low rst_n) with the source's
// valid and the sink's ready following seeded random patterns, and records every handshake.
// The top may hold several units behind an 8-bit `sel` input (a test wraps many parameter
// sets into one Verilated model); `sel` picks the one the ports reach.
//
//   Vtb IN_FILE OUT_FILE MAX_CYCLES SEL N_OUT VALID_SPEC READY_SPEC TAIL
//
// IN_FILE holds one input word per line in hex (most significant digit first). OUT_FILE gets
// "I <cycle>" for every accepted input word and "O <cycle> <hex>" for every output word.
// The run ends TAIL cycles after the N_OUT-th output word (extra words are recorded too), or
// fails at MAX_CYCLES. Pattern specs, one bit per cycle t (t = 0: first cycle after reset):
//   "1"            always 1
//   "r:P:S:SALT"   bit = mix(key + t) % 100 >= P, key = mix(S * 2 + SALT)
//   "f:PATH"       PATH holds one line of 0/1 characters, repeated cyclically (as taper_tb.cpp)
// The source offers a new word at cycle t when its valid bit is 1 and holds it until taken.
// "tb_top.h" (generated) includes the model and defines `Top`.
#include "tb_top.h"
#include "verilated.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "taper_tb_io.h"

int main(int argc, char** argv) {
    if (argc != 9) {
        std::fprintf(stderr, "usage: %s IN OUT MAX_CYCLES SEL N_OUT VALID_SPEC READY_SPEC TAIL\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[1]);
    std::vector<Words> inputs;
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) inputs.push_back(parse_hex(line));
    uint64_t max_cycles = std::strtoull(argv[3], nullptr, 10);
    unsigned sel = static_cast<unsigned>(std::strtoul(argv[4], nullptr, 10));
    uint64_t n_out = std::strtoull(argv[5], nullptr, 10);
    Pattern valid, ready;
    std::string err;
    if (!parse_pattern(argv[6], valid, err)) { std::fprintf(stderr, "VALID_SPEC %s: %s\n", argv[6], err.c_str()); return 2; }
    if (!parse_pattern(argv[7], ready, err)) { std::fprintf(stderr, "READY_SPEC %s: %s\n", argv[7], err.c_str()); return 2; }
    uint64_t tail = std::strtoull(argv[8], nullptr, 10);
    FILE* out = std::fopen(argv[2], "w");
    if (!out) { std::perror(argv[2]); return 2; }

    VerilatedContext ctx;
    ctx.commandArgs(1, argv);
    Top top{&ctx};
    top.sel = sel;
    top.clk = 0;
    top.rst_n = 0;
    top.s_tvalid = 0;
    top.m_tready = 0;
    for (int i = 0; i < 4; i++) {
        top.clk = 0; top.eval();
        top.clk = 1; top.eval();
    }
    top.rst_n = 1;

    size_t next = 0;
    uint64_t outs = 0, cycle = 0, stop = max_cycles;
    bool offering = false;
    for (; cycle < max_cycles && cycle < stop; cycle++) {
        top.clk = 0;
        if (!offering && next < inputs.size() && valid.at(cycle)) {
            put(top.s_tdata, inputs[next]);
            offering = true;
        }
        top.s_tvalid = offering;
        top.m_tready = ready.at(cycle);
        top.eval();
        bool in_fire = top.s_tvalid && top.s_tready;
        bool out_fire = top.m_tvalid && top.m_tready;
        if (in_fire) std::fprintf(out, "I %llu\n", (unsigned long long)cycle);
        if (out_fire) {
            std::fprintf(out, "O %llu %s\n", (unsigned long long)cycle, hex(top.m_tdata).c_str());
            if (++outs == n_out) stop = cycle + 1 + tail;
        }
        top.clk = 1;
        top.eval();
        if (in_fire) { next++; offering = false; }
    }
    top.final();
    std::fclose(out);
    if (outs < n_out) {
        std::fprintf(stderr, "timeout: %llu of %llu output words after %llu cycles\n",
                     (unsigned long long)outs, (unsigned long long)n_out, (unsigned long long)cycle);
        return 3;
    }
    return 0;
}
