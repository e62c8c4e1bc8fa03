// Helpers shared by taper's Verilator testbenches (taper_tb.cpp, taper_stream_tb.cpp): hex
// words to and from Verilated ports of any width, and the pattern generator's mixing function.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "verilated.h"

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

// splitmix64's finalizer, as mix() in compiler/sim/patterns.py
static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
