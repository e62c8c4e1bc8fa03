// taper stream testbench for Verilator: feeds input words to the generated top and records
// every handshake, with the source's valid and the sink's ready following given patterns (the
// same patterns as the Python cycle simulator, compiler/sim/patterns.py).
//
//   Vtb IN_FILE OUT_FILE MAX_CYCLES WORDS_PER_FRAME VALID_SPEC READY_SPEC FRAME_PERIOD
//
// IN_FILE holds one input word per line in hex (most significant digit first). OUT_FILE gets
// "I <cycle>" for every accepted input word and "O <cycle> <hex> <tlast>" for every output
// word. A pattern spec gives one bit per cycle t (t = 0 is the first cycle after reset):
//   "1"             always 1
//   "r:P:S:SALT"    bit = mix(key + t) % 100 >= P, key = mix(S * 2 + SALT) (uint64, mod 2^64)
//   "f:PATH"        PATH holds one line of 0/1 characters, repeated cyclically
// The source offers a new word at cycle t when its valid bit is 1 (and, with FRAME_PERIOD > 0,
// a frame f's first word not before cycle f * FRAME_PERIOD) and holds it until accepted; the
// sink's tready is its ready bit. "tb_top.h" (generated) includes the model and defines `Top`.
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
    if (argc != 8) {
        std::fprintf(stderr,
                     "usage: %s IN OUT MAX_CYCLES WORDS_PER_FRAME VALID_SPEC READY_SPEC FRAME_PERIOD\n",
                     argv[0]);
        return 2;
    }
    std::ifstream in(argv[1]);
    std::vector<Words> inputs;
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) inputs.push_back(parse_hex(line));
    uint64_t max_cycles = std::strtoull(argv[3], nullptr, 10);
    size_t words_per_frame = static_cast<size_t>(std::strtoull(argv[4], nullptr, 10));
    if (words_per_frame == 0) { std::fprintf(stderr, "WORDS_PER_FRAME must be > 0\n"); return 2; }
    Pattern valid, ready;
    std::string err;
    if (!parse_pattern(argv[5], valid, err)) { std::fprintf(stderr, "VALID_SPEC %s: %s\n", argv[5], err.c_str()); return 2; }
    if (!parse_pattern(argv[6], ready, err)) { std::fprintf(stderr, "READY_SPEC %s: %s\n", argv[6], err.c_str()); return 2; }
    uint64_t frame_period = std::strtoull(argv[7], nullptr, 10);
    FILE* out = std::fopen(argv[2], "w");
    if (!out) { std::perror(argv[2]); return 2; }

    VerilatedContext ctx;
    ctx.commandArgs(1, argv);
    Top top{&ctx};
    top.clk = 0;
    top.rst_n = 0;
    top.s_axis_tvalid = 0;
    top.m_axis_tready = 0;
    for (int i = 0; i < 4; i++) {
        top.clk = 0; top.eval();
        top.clk = 1; top.eval();
    }
    top.rst_n = 1;

    size_t next = 0;
    size_t frames_out = 0;
    size_t frames_expected = inputs.size() / words_per_frame;
    uint64_t cycle = 0;
    bool offering = false;
    for (; cycle < max_cycles && frames_out < frames_expected; cycle++) {
        top.clk = 0;
        if (!offering && next < inputs.size() && valid.at(cycle) &&
            (frame_period == 0 || next % words_per_frame != 0 ||
             cycle >= static_cast<uint64_t>(next / words_per_frame) * frame_period)) {
            put(top.s_axis_tdata, inputs[next]);
            offering = true;
        }
        top.s_axis_tvalid = offering;
        top.m_axis_tready = ready.at(cycle);
        top.eval();
        bool in_fire = top.s_axis_tvalid && top.s_axis_tready;
        bool out_fire = top.m_axis_tvalid && top.m_axis_tready;
        if (in_fire) std::fprintf(out, "I %llu\n", (unsigned long long)cycle);
        if (out_fire) {
            std::fprintf(out, "O %llu %s %d\n", (unsigned long long)cycle, hex(top.m_axis_tdata).c_str(),
                         static_cast<int>(top.m_axis_tlast));
            if (top.m_axis_tlast) frames_out++;
        }
        top.clk = 1;
        top.eval();
        if (in_fire) { next++; offering = false; }
    }
    top.final();
    std::fclose(out);
    if (frames_out < frames_expected) {
        std::fprintf(stderr, "timeout: %zu of %zu frames after %llu cycles\n", frames_out, frames_expected,
                     (unsigned long long)cycle);
        return 3;
    }
    return 0;
}
