// Helpers shared by taper's Verilator testbenches (taper_tb.cpp, taper_stream_tb.cpp): hex
// words to and from Verilated ports of any width, and the valid/ready patterns (the same as the
// Python cycle simulator's, compiler/sim/patterns.py).
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
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

// a decimal integer (optionally negative) mod 2^64, as Python's `& MASK` of any int
static bool parse_u64(const std::string& s, uint64_t& v) {
    size_t i = 0;
    bool neg = false;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == s.size()) return false;
    v = 0;
    for (; i < s.size(); i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + static_cast<uint64_t>(s[i] - '0');
    }
    if (neg) v = 0 - v;
    return true;
}

struct Pattern {
    enum Kind { ALWAYS, RANDOM, CYCLIC } kind = ALWAYS;
    uint64_t key = 0;
    uint64_t percent = 0;
    std::vector<uint8_t> bits;

    bool at(uint64_t t) const {
        if (kind == ALWAYS) return true;
        if (kind == RANDOM) return mix(key + t) % 100 >= percent;
        return bits[t % bits.size()] != 0;
    }
};

// "1", "r:PERCENT:SEED:SALT" or "f:PATH"; on error, a message in `err`
static bool parse_pattern(const std::string& spec, Pattern& p, std::string& err) {
    if (spec == "1") { p.kind = Pattern::ALWAYS; return true; }
    if (spec.rfind("r:", 0) == 0) {
        std::vector<std::string> f;
        size_t start = 2;
        for (size_t colon; (colon = spec.find(':', start)) != std::string::npos; start = colon + 1)
            f.push_back(spec.substr(start, colon - start));
        f.push_back(spec.substr(start));
        uint64_t seed = 0, salt = 0;
        if (f.size() != 3 || !parse_u64(f[0], p.percent) || p.percent > 99 || !parse_u64(f[1], seed) ||
            !parse_u64(f[2], salt)) {
            err = "expected r:PERCENT:SEED:SALT with PERCENT 0..99";
            return false;
        }
        p.kind = Pattern::RANDOM;
        p.key = mix(seed * 2 + salt);
        return true;
    }
    if (spec.rfind("f:", 0) == 0) {
        std::ifstream in(spec.substr(2));
        if (!in) { err = "cannot read " + spec.substr(2); return false; }
        std::string line;
        std::getline(in, line);
        for (char c : line) {
            if (c == '0' || c == '1') p.bits.push_back(static_cast<uint8_t>(c - '0'));
            else if (c != '\r' && c != ' ' && c != '\t') { err = "a pattern file holds 0/1 characters"; return false; }
        }
        if (p.bits.empty()) { err = "empty pattern file " + spec.substr(2); return false; }
        p.kind = Pattern::CYCLIC;
        return true;
    }
    err = "expected 1, r:PERCENT:SEED:SALT or f:PATH";
    return false;
}
