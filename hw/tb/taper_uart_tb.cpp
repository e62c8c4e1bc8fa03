// taper UART testbench for Verilator: talks to a generated `<name>_uart` top (frame wrapper +
// accelerator) over its serial lines, bit by bit, as a host would.
//
//   Vtb IN_FILE OUT_FILE CLKS_PER_BIT MAX_WAIT
//
// IN_FILE holds one message per line: "<expected reply bytes> <hex bytes>". Each message is
// sent (8N1, LSB first, CLKS_PER_BIT cycles per bit, back to back); then the testbench waits
// until the expected number of bytes came back since the message began, or MAX_WAIT cycles
// passed (then it writes "T <cycle> <message>" and goes on). After the last message it
// listens for MAX_WAIT more cycles for stray bytes. OUT_FILE gets "S <cycle> <message>" when
// a message starts and "R <cycle> <byte hex>" for every byte received; a received byte whose
// stop bit is 0 is written as "E <cycle>"; the last line is "D <cycles run>". "tb_top.h"
// (generated) defines `Top`.
#include "tb_top.h"
#include "verilated.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

struct Message {
    uint64_t expect = 0;
    std::vector<uint8_t> bytes;
};

static bool parse_line(const std::string& line, Message& m) {
    std::istringstream in(line);
    std::string hex;
    if (!(in >> m.expect)) return false;
    in >> hex;  // may be empty: a pause that waits for bytes only
    if (hex.size() % 2) return false;
    for (size_t i = 0; i < hex.size(); i += 2)
        m.bytes.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
    return true;
}

// The host's receiver: samples the DUT's tx line in the middle of each bit.
struct Receiver {
    uint64_t cpb;
    int state = 0;  // 0 idle, 1 start, 2..9 data bits, 10 stop
    uint64_t count = 0;
    uint8_t data = 0;
    // returns 1 for a byte in `out`, -1 for a framing error, 0 otherwise
    int step(bool line, uint8_t& out) {
        if (state == 0) {
            if (!line) { state = 1; count = 0; }
            return 0;
        }
        count++;
        uint64_t due = state == 1 ? cpb / 2 : cpb;
        if (count < due) return 0;
        count = 0;
        if (state == 1) {
            state = line ? 0 : 2;  // a glitch, not a start bit
            return 0;
        }
        if (state <= 9) {
            data = static_cast<uint8_t>((data >> 1) | (line ? 0x80 : 0));
            state++;
            return 0;
        }
        state = 0;
        if (!line) return -1;
        out = data;
        return 1;
    }
};

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s IN OUT CLKS_PER_BIT MAX_WAIT\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[1]);
    std::vector<Message> messages;
    for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        Message m;
        if (!parse_line(line, m)) { std::fprintf(stderr, "bad message line: %s\n", line.c_str()); return 2; }
        messages.push_back(m);
    }
    uint64_t cpb = std::strtoull(argv[3], nullptr, 10);
    uint64_t max_wait = std::strtoull(argv[4], nullptr, 10);
    if (cpb < 4) { std::fprintf(stderr, "CLKS_PER_BIT must be >= 4\n"); return 2; }
    FILE* out = std::fopen(argv[2], "w");
    if (!out) { std::perror(argv[2]); return 2; }

    VerilatedContext ctx;
    ctx.commandArgs(1, argv);
    Top top{&ctx};
    top.clk = 0;
    top.rst_n = 0;
    top.uart_rx = 1;
    for (int i = 0; i < 4; i++) {
        top.clk = 0; top.eval();
        top.clk = 1; top.eval();
    }
    top.rst_n = 1;

    Receiver rx{cpb};
    uint64_t cycle = 0;
    uint64_t received = 0;
    // one cycle: drive the line, clock, sample the DUT's tx
    auto tick = [&](bool line) {
        top.clk = 0;
        top.uart_rx = line;
        top.eval();
        top.clk = 1;
        top.eval();
        uint8_t b;
        int r = rx.step(top.uart_tx, b);
        if (r > 0) { std::fprintf(out, "R %llu %02x\n", (unsigned long long)cycle, b); received++; }
        if (r < 0) std::fprintf(out, "E %llu\n", (unsigned long long)cycle);
        cycle++;
    };
    for (size_t i = 0; i < messages.size(); i++) {
        std::fprintf(out, "S %llu %zu\n", (unsigned long long)cycle, i);
        uint64_t base = received;
        for (uint8_t byte : messages[i].bytes) {
            uint16_t frame = static_cast<uint16_t>(0x200 | (byte << 1));  // start 0, data, stop 1
            for (int bit = 0; bit < 10; bit++)
                for (uint64_t c = 0; c < cpb; c++) tick((frame >> bit) & 1);
        }
        uint64_t start = cycle;
        while (received - base < messages[i].expect && cycle - start < max_wait) tick(true);
        if (received - base < messages[i].expect)
            std::fprintf(out, "T %llu %zu\n", (unsigned long long)cycle, i);
    }
    for (uint64_t c = 0; c < max_wait; c++) tick(true);
    std::fprintf(out, "D %llu\n", (unsigned long long)cycle);
    top.final();
    std::fclose(out);
    return 0;
}
