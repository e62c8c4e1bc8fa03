// taper stream testbench for Verilator: feeds input words to the generated top and records
// every output word, with random input stalls and random output backpressure.
//
//   Vtb IN_FILE OUT_FILE STALL_PERCENT SEED MAX_CYCLES WORDS_PER_FRAME
//
// IN_FILE holds one input word per line in hex (most significant digit first). OUT_FILE gets
// "I <cycle>" when the first word of an input frame is accepted and "O <cycle> <hex> <tlast>"
// for every output word. "tb_top.h" (generated) includes the model and defines `Top`.
#include "tb_top.h"
#include "verilated.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

using Words = std::vector<uint32_t>;  // least significant 32-bit word first

static Words parse_hex(const std::string& s) {
    Words w;
    int n = static_cast<int>(s.size());
    for (int end = n; end > 0; end -= 8) {
        int begin = end - 8 < 0 ? 0 : end - 8;
        w.push_back(static_cast<uint32_t>(std::stoul(s.substr(begin, end - begin), nullptr, 16)));
    }
    return w;
}

template <typename T> static void put(T& port, const Words& w) {
    uint64_t v = 0;
    for (size_t i = 0; i < w.size() && i < 2; i++) v |= static_cast<uint64_t>(w[i]) << (32 * i);
    port = static_cast<T>(v);
}
template <std::size_t N> static void put(VlWide<N>& port, const Words& w) {
    for (std::size_t i = 0; i < N; i++) port[i] = i < w.size() ? w[i] : 0;
}
template <typename T> static std::string hex(const T& port) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(port));
    return buf;
}
template <std::size_t N> static std::string hex(const VlWide<N>& port) {
    std::string s;
    char buf[16];
    for (std::size_t i = N; i-- > 0;) {
        std::snprintf(buf, sizeof buf, "%08x", port[i]);
        s += buf;
    }
    return s;
}

// xorshift: the same stall pattern for the same seed on every machine
static uint64_t rng_state = 88172645463325252ull;
static unsigned rnd100() {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return static_cast<unsigned>(rng_state % 100);
}

int main(int argc, char** argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s IN OUT STALL_PERCENT SEED MAX_CYCLES WORDS_PER_FRAME\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[1]);
    std::vector<Words> inputs;
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) inputs.push_back(parse_hex(line));
    FILE* out = std::fopen(argv[2], "w");
    if (!out) { std::perror(argv[2]); return 2; }
    unsigned stall = static_cast<unsigned>(std::atoi(argv[3]));
    rng_state += static_cast<uint64_t>(std::atoll(argv[4])) * 0x9E3779B97F4A7C15ull;
    uint64_t max_cycles = std::strtoull(argv[5], nullptr, 10);
    size_t words_per_frame = static_cast<size_t>(std::atol(argv[6]));

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
        if (!offering && next < inputs.size() && rnd100() >= stall) {
            put(top.s_axis_tdata, inputs[next]);
            offering = true;
        }
        top.s_axis_tvalid = offering;
        top.m_axis_tready = rnd100() >= stall;
        top.eval();
        bool in_fire = top.s_axis_tvalid && top.s_axis_tready;
        bool out_fire = top.m_axis_tvalid && top.m_axis_tready;
        if (in_fire && next % words_per_frame == 0) std::fprintf(out, "I %llu\n", (unsigned long long)cycle);
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
