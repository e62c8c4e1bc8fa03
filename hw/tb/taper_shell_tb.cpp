// taper shell harness for Verilator: plays the AXI DMA (both stream channels) and the
// processor's AXI-lite master around a generated <name>_shell, driven by line commands on
// stdin, one reply line each on stdout. compiler/deploy/sim_pynq.py (a stand-in for pynq)
// runs it to execute the board driver against the real RTL.
//
//   Vshell IN_BYTES OUT_BYTES
//
// Commands (numbers decimal; one clock domain; every command but W/R/S/V/Q runs the clock):
//   W ADDR DATA STRB   AXI-lite write                          -> "B <bresp> <cycle>"
//   R ADDR             AXI-lite read                           -> "D <rdata> <rresp> <cycle>"
//   S PATH NWORDS      MM2S: queue NWORDS words of IN_BYTES bytes (little-endian) from PATH
//                      (the channel must be idle)              -> "OK"
//   V PATH CAPACITY    S2MM: arm a receive of up to CAPACITY words of OUT_BYTES bytes into
//                      PATH (the channel must be idle)         -> "OK"
//   T CHANNEL IDLE     run until channel S (all queued words accepted) or V (a word with
//                      TLAST taken, or CAPACITY words) is done -> "DONE <words> <full> <cycle>"
//                      (full = 1: the buffer filled before TLAST); after IDLE cycles without
//                      any stream handshake                    -> "TIMEOUT <cycle>"
//   Q                  quit (so does end of input)
// Every clock cycle offers the next queued word (TLAST on the last one) and takes an output
// word while a receive is armed: an ideal DMA, one word per cycle each way. AXI-lite
// transactions also run the clock, so streams move during them as on the board.
#include "tb_top.h"
#include "verilated.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using Bytes = std::vector<uint8_t>;

template <typename T> static void put(T& port, const uint8_t* b, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 8; i++) v |= static_cast<uint64_t>(b[i]) << (8 * i);
    port = static_cast<T>(v);
}
template <std::size_t N> static void put(VlWide<N>& port, const uint8_t* b, size_t n) {
    for (std::size_t w = 0; w < N; w++) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            size_t i = 4 * w + k;
            if (i < n) v |= static_cast<uint32_t>(b[i]) << (8 * k);
        }
        port[w] = v;
    }
}
template <typename T> static void get(const T& port, uint8_t* b, size_t n) {
    uint64_t v = static_cast<uint64_t>(port);
    for (size_t i = 0; i < n; i++) b[i] = i < 8 ? static_cast<uint8_t>(v >> (8 * i)) : 0;
}
template <std::size_t N> static void get(const VlWide<N>& port, uint8_t* b, size_t n) {
    for (size_t i = 0; i < n; i++) b[i] = i / 4 < N ? static_cast<uint8_t>(port[i / 4] >> (8 * (i % 4))) : 0;
}

struct Harness {
    VerilatedContext ctx;
    Top top{&ctx};
    size_t in_bytes, out_bytes;
    uint64_t cycle = 0;
    uint64_t last_move = 0;  // cycle of the latest stream handshake
    // MM2S
    Bytes send;
    size_t send_words = 0, sent = 0;
    // S2MM
    bool recv_armed = false, recv_full = false;
    std::string recv_path;
    size_t capacity = 0;
    Bytes recv;
    size_t received = 0;
    // AXI-lite master
    bool aw = false, w = false, b = false, ar = false, r = false;
    uint32_t addr = 0, wdata = 0, wstrb = 0, rdata = 0, resp = 0;

    Harness(size_t ib, size_t ob) : in_bytes(ib), out_bytes(ob) {
        top.clk = 0;
        top.rst_n = 0;
        top.s_axis_tvalid = 0;
        top.m_axis_tready = 0;
        top.s_axil_awvalid = 0;
        top.s_axil_wvalid = 0;
        top.s_axil_bready = 0;
        top.s_axil_arvalid = 0;
        top.s_axil_rready = 0;
        for (int i = 0; i < 4; i++) {
            top.clk = 0; top.eval();
            top.clk = 1; top.eval();
        }
        top.rst_n = 1;
    }

    bool sending() const { return sent < send_words; }
    bool receiving() const { return recv_armed && received < capacity && !recv_done; }
    bool recv_done = false;

    void tick() {
        top.clk = 0;
        top.s_axis_tvalid = sending();
        if (sending()) put(top.s_axis_tdata, &send[sent * in_bytes], in_bytes);
        top.s_axis_tlast = sending() && sent + 1 == send_words;
        top.m_axis_tready = receiving();
        top.s_axil_awvalid = aw;
        top.s_axil_awaddr = addr;
        top.s_axil_wvalid = w;
        top.s_axil_wdata = wdata;
        top.s_axil_wstrb = wstrb;
        top.s_axil_bready = b;
        top.s_axil_arvalid = ar;
        top.s_axil_araddr = addr;
        top.s_axil_rready = r;
        top.eval();
        bool in_fire = top.s_axis_tvalid && top.s_axis_tready;
        bool out_fire = top.m_axis_tvalid && top.m_axis_tready;
        bool out_last = top.m_axis_tlast;
        if (out_fire) get(top.m_axis_tdata, &recv[received * out_bytes], out_bytes);
        bool aw_fire = aw && top.s_axil_awready, w_fire = w && top.s_axil_wready;
        bool b_fire = b && top.s_axil_bvalid, ar_fire = ar && top.s_axil_arready;
        bool r_fire = r && top.s_axil_rvalid;
        if (b_fire) resp = top.s_axil_bresp;
        if (r_fire) { rdata = top.s_axil_rdata; resp = top.s_axil_rresp; }
        top.clk = 1;
        top.eval();
        if (in_fire) sent++;
        if (out_fire) {
            received++;
            if (out_last) recv_done = true;
            else if (received == capacity) { recv_done = true; recv_full = true; }
        }
        if (in_fire || out_fire) last_move = cycle;
        if (aw_fire) aw = false;
        if (w_fire) w = false;
        if (b_fire) b = false;
        if (ar_fire) ar = false;
        if (r_fire) r = false;
        cycle++;
    }

    void write(uint32_t a, uint32_t d, uint32_t s) {
        addr = a; wdata = d; wstrb = s;
        aw = w = b = true;
        while (aw || w || b) tick();
    }
    uint32_t read(uint32_t a) {
        addr = a;
        ar = r = true;
        while (ar || r) tick();
        return rdata;
    }
};

static bool read_file(const std::string& path, Bytes& out, size_t n) {
    std::ifstream in(path, std::ios::binary);
    out.assign(n, 0);
    return static_cast<bool>(in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(n)));
}

static bool write_file(const std::string& path, const Bytes& data, size_t n) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(n));
    return static_cast<bool>(out);
}

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s IN_BYTES OUT_BYTES\n", argv[0]);
        return 2;
    }
    Harness h(std::strtoul(argv[1], nullptr, 10), std::strtoul(argv[2], nullptr, 10));
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream cmd(line);
        std::string op;
        cmd >> op;
        if (op.empty()) continue;
        if (op == "Q") break;
        if (op == "W") {
            uint32_t a = 0, d = 0, s = 0;
            cmd >> a >> d >> s;
            h.write(a, d, s);
            std::printf("B %u %llu\n", h.resp, (unsigned long long)h.cycle);
        } else if (op == "R") {
            uint32_t a = 0;
            cmd >> a;
            uint32_t d = h.read(a);
            std::printf("D %u %u %llu\n", d, h.resp, (unsigned long long)h.cycle);
        } else if (op == "S") {
            std::string path;
            size_t n = 0;
            cmd >> path >> n;
            if (h.sending()) { std::printf("ERR MM2S channel not idle\n"); }
            else if (!read_file(path, h.send, n * h.in_bytes)) { std::printf("ERR cannot read %s\n", path.c_str()); }
            else { h.send_words = n; h.sent = 0; std::printf("OK\n"); }
        } else if (op == "V") {
            std::string path;
            size_t n = 0;
            cmd >> path >> n;
            if (h.receiving()) { std::printf("ERR S2MM channel not idle\n"); }
            else {
                h.recv_armed = true; h.recv_done = false; h.recv_full = false;
                h.recv_path = path; h.capacity = n; h.received = 0;
                h.recv.assign(n * h.out_bytes, 0);
                std::printf("OK\n");
            }
        } else if (op == "T") {
            std::string ch;
            uint64_t idle = 0;
            cmd >> ch >> idle;
            bool is_send = ch == "S";
            h.last_move = h.cycle;
            bool timeout = false;
            while (is_send ? h.sending() : (h.recv_armed && !h.recv_done)) {
                if (h.cycle - h.last_move > idle) { timeout = true; break; }
                h.tick();
            }
            if (timeout) std::printf("TIMEOUT %llu\n", (unsigned long long)h.cycle);
            else if (is_send) std::printf("DONE %zu 0 %llu\n", h.sent, (unsigned long long)h.cycle);
            else if (!h.recv_armed) std::printf("DONE 0 0 %llu\n", (unsigned long long)h.cycle);
            else {
                h.recv_armed = false;
                if (!write_file(h.recv_path, h.recv, h.received * h.out_bytes)) std::printf("ERR cannot write %s\n", h.recv_path.c_str());
                else std::printf("DONE %zu %d %llu\n", h.received, h.recv_full ? 1 : 0, (unsigned long long)h.cycle);
            }
        } else {
            std::printf("ERR unknown command %s\n", op.c_str());
        }
        std::fflush(stdout);
    }
    h.top.final();
    return 0;
}
