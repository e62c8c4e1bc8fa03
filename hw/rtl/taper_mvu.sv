// taper matrix-vector-threshold unit: one fully connected layer of the dataflow pipeline.
//
// Computes, for every input vector of MW elements (streamed as MW/SIMD words of SIMD
// elements), MH outputs (streamed as MH/PE words of PE elements):
//   acc[o] = sum_i W[o][i] * x[i]        (XNOR: popcount of x[i] == W[o][i])
//   y[o]   = count_k(acc[o] >= T[o][k]) + OUT_BIAS   (OUT_BIPOLAR: 1 bit, 1 = +1)
// where the threshold memory holds T[o][0] and the steps T[o][k] - T[o][0] (k > 0).
// or y[o] = acc[o] without thresholds (N_THRESH = 0).
// Neuron o = nf*PE + pe, input i = sf*SIMD + simd; lane 0 is in the low bits of a word.
//
// Folding: NF = MH/PE neuron folds x SF = MW/SIMD synapse folds = NF*SF cycles per frame.
// The input vector is double-buffered, so the next frame streams in while this one is
// computed and the unit sustains one frame every NF*SF cycles. Weights and thresholds are
// ROMs with a registered read port, in block RAM or LUTs as W_STYLE / T_STYLE say (the
// generator decides by size and width); with W_SPLIT the low W_SPLIT bits of every weight word
// are in block RAM and the rest in LUTs, when the board's block RAMs run out mid-layer (block
// RAM gives 72 bits per cycle each: a fast layer may need more than the board has). The pipeline (issue, address register, weight read,
// compressor level, dot product, accumulator, threshold/output register) stalls as a whole
// while the output word is not taken, which keeps it correct under any backpressure.
module taper_mvu #(
    parameter MW = 16,
    parameter MH = 8,
    parameter PE = 2,
    parameter SIMD = 4,
    parameter IN_BITS = 4,
    parameter IN_SIGNED = 1,
    parameter IN_BIPOLAR = 0,   // 1-bit inputs meaning -1 (0) / +1 (1), times integer weights
    parameter W_BITS = 4,
    parameter W_SIGNED = 1,
    parameter W_BIPOLAR = 0,    // 1-bit weights meaning -1 (0) / +1 (1)
    parameter XNOR = 0,         // 1-bit inputs and weights: acc = popcount(xnor)
    parameter ACC_BITS = 16,    // signed accumulator width
    parameter N_THRESH = 0,     // thresholds per neuron; 0 = output the accumulator
    parameter T_BITS = 16,      // signed width of T[o][0] and of the steps T[o][k] - T[o][0]
    parameter OUT_BITS = 16,
    parameter OUT_BIAS = 0,
    parameter OUT_BIPOLAR = 0,
    parameter WEIGHT_FILE = "weights.mem",
    parameter THRESH_FILE = "thresholds.mem",
    parameter W_STYLE = "auto",    // weight ROM: "block" (block RAM), "logic" (LUTs) or "auto"
    parameter W_SPLIT = 0,         // 0 < W_SPLIT < WW: low bits in block RAM, the rest in LUTs
    parameter WEIGHT_FILE_HI = "weights_hi.mem",  // with W_SPLIT: the bits above W_SPLIT
    parameter T_STYLE = "auto"     // threshold ROM, likewise
) (
    input  logic                     clk,
    input  logic                     rst_n,
    input  logic [SIMD*IN_BITS-1:0]  s_tdata,
    input  logic                     s_tvalid,
    output logic                     s_tready,
    output logic [PE*OUT_BITS-1:0]   m_tdata,
    output logic                     m_tvalid,
    input  logic                     m_tready
);
    localparam SF = MW / SIMD;
    localparam NF = MH / PE;
    localparam WW = PE * SIMD * W_BITS;
    localparam TW = PE * ((N_THRESH > 0) ? N_THRESH : 1) * T_BITS;  // >= any select below
    localparam CB = $clog2(SF + 1);
    localparam SB = (SF > 1) ? $clog2(SF) : 1;
    localparam NB = (NF > 1) ? $clog2(NF) : 1;
    localparam AB = $clog2(NF * SF) + 1;
    localparam KB = $clog2(N_THRESH + 1) + 1;
    // accumulator: with thresholds it starts at -T[o][0], so the first comparison is its sign
    // (no comparator) and the others compare with the steps; one bit more holds sum - T[o][0]
    localparam AW = (N_THRESH > 0) ? ((T_BITS > ACC_BITS) ? T_BITS : ACC_BITS) + 1 : ACC_BITS;

    // ---- parameter memories
    (* rom_style = T_STYLE, ram_style = T_STYLE *) logic [TW-1:0] tmem [0:NF-1];
    initial if (N_THRESH > 0) $readmemh(THRESH_FILE, tmem);

    // ---- input double buffer: writer fills buffer wb, compute reads buffer rb
    logic [SIMD*IN_BITS-1:0] ibuf [0:(2 << SB)-1];  // buffer b, word s at {b, s}
    logic [CB-1:0] cnt0, cnt1;
    logic wb, rb;
    wire [CB-1:0] cnt_w = wb ? cnt1 : cnt0;
    wire [CB-1:0] cnt_o = wb ? cnt0 : cnt1;
    wire [CB-1:0] cnt_r = rb ? cnt1 : cnt0;
    assign s_tready = (cnt_w != CB'(SF));
    wire wr = s_tvalid && s_tready;

    // ---- issue stage: one (nf, sf) step per cycle when its input word is there
    logic [NB-1:0] nf;
    logic [SB-1:0] sf;
    logic [AB-1:0] waddr;  // nf * SF + sf, counted (no multiplier)
    logic stall;
    wire last_sf = (sf == SB'(SF - 1));
    wire last_nf = (nf == NB'(NF - 1));
    wire issue = !stall && (cnt_r > CB'(sf));
    wire release_rb = issue && last_sf && last_nf;

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            cnt0 <= '0;
            cnt1 <= '0;
            wb <= 1'b0;
            rb <= 1'b0;
            nf <= '0;
            sf <= '0;
            waddr <= '0;
        end else begin
            if (wr) ibuf[{wb, cnt_w[SB-1:0]}] <= s_tdata;
            // a buffer is released by compute or filled by the writer, never both at once
            if (release_rb && !rb) cnt0 <= '0;
            else if (wr && !wb) cnt0 <= cnt0 + 1'b1;
            if (release_rb && rb) cnt1 <= '0;
            else if (wr && wb) cnt1 <= cnt1 + 1'b1;
            // switch to the other buffer as the frame completes, if it is free by the next
            // cycle (released now counts): a single-fold layer takes a word every cycle
            if ((cnt_w == CB'(SF) || (wr && cnt_w == CB'(SF - 1)))
                && (cnt_o == '0 || (release_rb && rb != wb))) wb <= !wb;
            if (issue) begin
                sf <= last_sf ? '0 : sf + 1'b1;
                if (last_sf) nf <= last_nf ? '0 : nf + 1'b1;
                waddr <= release_rb ? '0 : waddr + 1'b1;
                if (release_rb) rb <= !rb;
            end
        end
    end

    // ---- the pipeline, all stages stalling together while the output word is not taken:
    //   R1 the weight address, registered; the input word's registered read
    //   R2 the weights' registered read (block RAM read port); the input word again
    //   R3 the first compressor level of the dot product (L1REG), else its operands again
    //   R4 the dot product of each PE: the rest of the compressor tree, then one adder
    //   R5 accumulators (and the thresholds' registered read)
    //   R6 thresholds applied: the output register
    // R1 keeps the weight ROM's address a plain register: read straight from the address
    // counter, Yosys/ABC folded the counter's carry chain into every ROM bit (4 LUTs per bit
    // instead of one LUT6 per 64 words).
    logic [AB-1:0] ra;
    logic [WW-1:0] w_q;
    logic [SIMD*IN_BITS-1:0] x_q, x_q2;
    logic v1, v2, v3, v4;
    logic first1, first2, first3, first4, last1, last2, last3, last4;
    logic [NB-1:0] nf1, nf2, nf3, nf4;
    always_ff @(posedge clk) begin
        if (!stall) begin
            ra <= waddr;
            x_q <= ibuf[{rb, sf}];
        end
    end
    generate
        if (W_SPLIT > 0 && W_SPLIT < WW) begin : g_wsplit
            (* rom_style = "block", ram_style = "block" *)
            logic [W_SPLIT-1:0] wmem_lo [0:NF*SF-1];
            (* rom_style = "logic", ram_style = "logic" *)
            logic [WW-W_SPLIT-1:0] wmem_hi [0:NF*SF-1];
            initial begin
                $readmemh(WEIGHT_FILE, wmem_lo);
                $readmemh(WEIGHT_FILE_HI, wmem_hi);
            end
            always_ff @(posedge clk) if (!stall) w_q <= {wmem_hi[ra], wmem_lo[ra]};
        end else begin : g_w
            (* rom_style = W_STYLE, ram_style = W_STYLE *) logic [WW-1:0] wmem [0:NF*SF-1];
            initial $readmemh(WEIGHT_FILE, wmem);
            always_ff @(posedge clk) if (!stall) w_q <= wmem[ra];
        end
    endgenerate
    // a reset of no use but to stop Yosys packing x_q -> x_q2 -> R3 into shift-register LUTs
    always_ff @(posedge clk) begin
        if (!rst_n) x_q2 <= '0;
        else if (!stall) x_q2 <= x_q;
    end
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            v1 <= 1'b0;
            v2 <= 1'b0;
            v3 <= 1'b0;
            v4 <= 1'b0;
        end else if (!stall) begin
            v1 <= issue;
            v2 <= v1;
            v3 <= v2;
            v4 <= v3;
        end
    end
    always_ff @(posedge clk) begin
        if (!stall) begin
            first1 <= (sf == '0);
            last1 <= last_sf;
            nf1 <= nf;
            first2 <= first1;
            last2 <= last1;
            nf2 <= nf1;
            first3 <= first2;
            last3 <= last2;
            nf3 <= nf2;
            first4 <= first3;
            last4 <= last3;
            nf4 <= nf3;
        end
    end

    // ---- the dot product as a bit heap. Every SIMD product is written as single bits, each
    // a function of at most one input bit and one weight bit, at a column (weight 2^col), plus
    // a constant; the constants of all MW products are folded into the accumulator's start
    // value KC. Columns at and above OW are dropped: the sums are taken modulo 2^OW (= the
    // accumulator width AW; the popcount width for XNOR, which cannot overflow it).
    //   XNOR:        x == w at column 0
    //   IN_BIPOLAR:  (x ? v : -v) = sum_j (x ~^ v_j) 2^j (j < W), (x ^ v_W) 2^W, ~x, - 2^W
    //   W_BIPOLAR:   the same with input and weight swapped
    //   integers:    x_i & w_j at column i + j; a pair with one sign bit is negative:
    //                -(x_i & w_j) 2^c = ~(x_i & w_j) 2^c - 2^c (Baugh-Wooley)
    // Level 1 adds each three bits of a column in one full adder (six input bits: one LUT6 per
    // output); later levels reduce columns with 6:3 counters (one LUT6 per output) until two
    // rows are left, which one adder sums. Yosys maps a registered 28-lane XNOR popcount so to
    // 49 LUTs (an adder tree of 1-bit values: 59; 64 lanes 111 against 138). (Yosys trims an
    // adder tree of integer products to the widths its sums reach by itself.)
    localparam OW = XNOR ? $clog2(SIMD + 1) : AW;
    localparam MODE = XNOR ? 0 : IN_BIPOLAR ? 1 : W_BIPOLAR ? 2 : 3;
    localparam T = (MODE == 0) ? 1 : (MODE == 1) ? W_BITS + 2 : (MODE == 2) ? IN_BITS + 2
        : IN_BITS * W_BITS;  // bits per product
    // bit operations: x_i & w_j, ~(x_i & w_j), x_i ~^ w_j, x_i ^ w_j, x_i, w_j, ~x_i, ~w_j
    localparam OP_AND = 0, OP_NAND = 1, OP_XNOR = 2, OP_XOR = 3, OP_X = 4, OP_W = 5, OP_NX = 6,
        OP_NW = 7;

    // product bit t: {column, op, input bit, weight bit}
    function automatic int bit_col(int t);
        if (MODE == 0) return 0;
        if (MODE == 3) return t / W_BITS + t % W_BITS;
        if (t == T - 1) return 0;   // ~x (or ~w): the +1 of the negation
        return t;                   // t < T - 1: bit t of the magnitude, t = T - 2 its sign
    endfunction
    function automatic int bit_op(int t);
        int b;
        if (MODE == 0) return OP_XNOR;
        if (MODE == 3) begin
            if (((IN_SIGNED != 0) && t / W_BITS == IN_BITS - 1)
                != ((W_SIGNED != 0) && t % W_BITS == W_BITS - 1)) return OP_NAND;
            return OP_AND;
        end
        b = (MODE == 1) ? W_BITS : IN_BITS;
        if (t == T - 1) return (MODE == 1) ? OP_NX : OP_NW;
        if (t < b) return OP_XNOR;
        // the sign position: x ^ sign(v), or the bipolar bit alone when v is unsigned
        if (MODE == 1) return W_SIGNED ? OP_XOR : OP_X;
        return IN_SIGNED ? OP_XOR : OP_W;
    endfunction
    function automatic int bit_x(int t);  // input bit index
        if (MODE == 3) return t / W_BITS;
        if (MODE == 2) return (t < IN_BITS) ? t : IN_BITS - 1;
        return 0;
    endfunction
    function automatic int bit_w(int t);  // weight bit index
        if (MODE == 3) return t % W_BITS;
        if (MODE == 1) return (t < W_BITS) ? t : W_BITS - 1;
        return 0;
    endfunction
    function automatic longint lane_const();  // the constant of one product
        longint k;
        k = 0;
        if (MODE == 1) k = -(longint'(1) << W_BITS);
        if (MODE == 2) k = -(longint'(1) << IN_BITS);
        if (MODE == 3)
            for (int t = 0; t < T; t++) if (bit_op(t) == OP_NAND) k -= longint'(1) << bit_col(t);
        return k;
    endfunction
    localparam logic [AW-1:0] KC = AW'(longint'(MW) * lane_const());

    // level 0: column c holds, lane by lane, the product bits of that column
    function automatic int per_lane(int c);
        int n;
        n = 0;
        for (int t = 0; t < T; t++) if (bit_col(t) == c) n++;
        return n;
    endfunction
    function automatic int nth_bit(int c, int r);  // the r-th product bit in column c
        for (int t = 0; t < T; t++) if (bit_col(t) == c) begin
            if (r == 0) return t;
            r--;
        end
        return 0;
    endfunction
    function automatic int h0(int c);
        return (c < OW) ? SIMD * per_lane(c) : 0;
    endfunction
    function automatic int h1(int c);  // after level 1: sums, carries from c - 1, the rest
        return h0(c) / 3 + h0(c) % 3 + ((c >= 1) ? h0(c - 1) / 3 : 0);
    endfunction
    // levels 2...: 6:3 counters (or one 3..5-input counter for the rest of a column)
    function automatic int ncnt(int h); return h / 6 + ((h % 6) >= 3 ? 1 : 0); endfunction
    function automatic int n3(int h); return h / 6 + ((h % 6) >= 4 ? 1 : 0); endfunction
    function automatic int used(int h); return (h / 6) * 6 + ((h % 6) >= 3 ? h % 6 : 0); endfunction
    // column heights of every stage (0: after level 1), computed once: slang bounds the steps
    // of each constant evaluation, and the heap needs few stages (each halves the heights)
    localparam SMAX = 16, HB = 16;
    function automatic logic [SMAX*64*HB-1:0] heights();
        logic [SMAX*64*HB-1:0] r;
        int h [0:63];
        int nh [0:63];
        r = '0;
        for (int i = 0; i < OW; i++) h[i] = h1(i);
        for (int u = 0; u < SMAX; u++) begin
            for (int i = 0; i < OW; i++) r[(u * 64 + i) * HB +: HB] = HB'(h[i]);
            for (int i = 0; i < OW; i++)
                nh[i] = h[i] - used(h[i]) + ncnt(h[i])
                    + ((i >= 1) ? ncnt(h[i - 1]) : 0) + ((i >= 2) ? n3(h[i - 2]) : 0);
            for (int i = 0; i < OW; i++) h[i] = nh[i];
        end
        return r;
    endfunction
    localparam logic [SMAX*64*HB-1:0] HT = heights();
    function automatic int height(int s, int c);  // column c's height at stage s
        return (c < 0 || c >= OW) ? 0 : int'(HT[(s * 64 + c) * HB +: HB]);
    endfunction
    function automatic int stages();
        for (int s = 0; s < SMAX; s++) begin
            int m;
            m = 0;
            for (int c = 0; c < OW; c++) if (height(s, c) > m) m = height(s, c);
            if (m <= 2) return s;
        end
        return SMAX;  // not reached for heaps of up to 2^16 bits a column
    endfunction
    function automatic int max_height();
        int m;
        m = 2;
        for (int c = 0; c < OW; c++) if (height(0, c) > m) m = height(0, c);
        for (int s = 1; s < SMAX; s++)
            for (int c = 0; c < OW; c++) if (height(s, c) > m) m = height(s, c);
        return m;
    endfunction
    function automatic int l1_bits();
        int n;
        n = 0;
        for (int c = 0; c < OW; c++) n += h1(c);
        return n;
    endfunction
    localparam S = stages();
    localparam HM = max_height();
    // register level 1 (R2) instead of the raw operands when that takes no more flip-flops:
    // the register splits the tree for the LUT mapper (fewer LUTs, shorter paths)
    localparam L1REG = (PE * l1_bits() <= WW + SIMD * IN_BITS);

    // full adder and 6:3 counter on vectors of PE bits (gates only, no adder cells, so the
    // LUT mapper sees each output bit as one function of at most six inputs)
    function automatic logic [1:0][PE-1:0] fa(logic [PE-1:0] a, logic [PE-1:0] b,
                                              logic [PE-1:0] c);
        return {(a & b) | (c & (a ^ b)), a ^ b ^ c};
    endfunction
    function automatic logic [2:0][PE-1:0] count6(logic [5:0][PE-1:0] v);
        logic [1:0][PE-1:0] p, q;
        logic [PE-1:0] k;
        p = fa(v[0], v[1], v[2]);
        q = fa(v[3], v[4], v[5]);
        k = p[0] & q[0];
        return {(p[1] & q[1]) | (k & (p[1] ^ q[1])), p[1] ^ q[1] ^ k, p[0] ^ q[0]};
    endfunction
    function automatic logic [PE-1:0] prod_bit(int op, logic [PE-1:0] x, logic [PE-1:0] w);
        case (op)
            OP_AND: return x & w;
            OP_NAND: return ~(x & w);
            OP_XNOR: return ~(x ^ w);
            OP_XOR: return x ^ w;
            OP_X: return x;
            OP_W: return w;
            OP_NX: return ~x;
            default: return ~w;
        endcase
    endfunction

    // operands of level 1: R2's outputs when level 1 is registered, else R3's
    logic [WW-1:0] w_l1;
    logic [SIMD*IN_BITS-1:0] x_l1;
    if (L1REG) begin : g_l1_src
        assign w_l1 = w_q;
        assign x_l1 = x_q2;
    end else begin : g_r3
        always_ff @(posedge clk) begin
            if (!stall) begin
                w_l1 <= w_q;
                x_l1 <= x_q2;
            end
        end
    end
    // lane s, bit j of every PE's weight (one vector over PE), and input bit i (all PEs)
    logic [PE-1:0] wv [0:SIMD-1][0:W_BITS-1];
    logic [PE-1:0] xv [0:SIMD-1][0:IN_BITS-1];
    always_comb begin
        for (int s = 0; s < SIMD; s++) begin
            for (int j = 0; j < W_BITS; j++)
                for (int p = 0; p < PE; p++) wv[s][j][p] = w_l1[(p * SIMD + s) * W_BITS + j];
            for (int i = 0; i < IN_BITS; i++) xv[s][i] = {PE{x_l1[s * IN_BITS + i]}};
        end
    end

    logic [PE-1:0] col [0:S][0:OW-1][0:HM-1];  // col[s]: the heap at stage s
    for (genvar c = 0; c < OW; c++) begin : g_l1
        localparam H = h0(c);
        localparam HP = (c >= 1) ? h0(c - 1) : 0;
        localparam PL = per_lane(c) > 0 ? per_lane(c) : 1;
        logic [PE-1:0] b0 [0:(H > 0 ? H : 1) - 1];  // level 0: this column's product bits
        logic [PE-1:0] l1 [0:HM-1];
        for (genvar k = 0; k < H; k++) begin : g_bit
            localparam TB = nth_bit(c, k % PL);
            assign b0[k] = prod_bit(bit_op(TB), xv[k / PL][bit_x(TB)], wv[k / PL][bit_w(TB)]);
        end
        for (genvar k = 0; k < HM; k++) begin : g_pos
            if (k < H / 3) begin : g_sum
                wire [1:0][PE-1:0] r = fa(b0[3 * k], b0[3 * k + 1], b0[3 * k + 2]);
                assign l1[k] = r[0];
            end else if (k < H / 3 + H % 3) begin : g_rest
                assign l1[k] = b0[3 * (H / 3) + k - H / 3];
            end else if (k < H / 3 + H % 3 + HP / 3) begin : g_carry
                localparam G = k - H / 3 - H % 3;
                wire [1:0][PE-1:0] r = fa(g_l1[c - 1].b0[3 * G], g_l1[c - 1].b0[3 * G + 1],
                                          g_l1[c - 1].b0[3 * G + 2]);
                assign l1[k] = r[1];
            end else begin : g_zero
                assign l1[k] = '0;
            end
        end
        if (L1REG) begin : g_reg
            always_ff @(posedge clk) if (!stall) col[0][c] <= l1;
        end else begin : g_wire
            assign col[0][c] = l1;
        end
    end

    for (genvar s = 0; s < S; s++) begin : g_st
        for (genvar c = 0; c < OW; c++) begin : g_col
            localparam H = height(s, c);
            localparam NC = ncnt(H);
            localparam N1 = (c >= 1) ? ncnt(height(s, c - 1)) : 0;
            localparam N2 = (c >= 2) ? n3(height(s, c - 2)) : 0;
            localparam U = used(H);
            logic [2:0][PE-1:0] cnt [0:(NC > 0 ? NC : 1) - 1];
            for (genvar j = 0; j < NC; j++) begin : g_cnt
                localparam M = (j < H / 6) ? 6 : H % 6;
                logic [5:0][PE-1:0] v;
                for (genvar i = 0; i < 6; i++) begin : g_in
                    assign v[i] = (i < M) ? col[s][c][6 * j + i] : '0;
                end
                assign cnt[j] = count6(v);
            end
            // next stage: this column's counter sums, carries from c - 1 and c - 2, the rest
            for (genvar k = 0; k < HM; k++) begin : g_pos
                if (k < NC) begin : g_b0
                    assign col[s + 1][c][k] = cnt[k][0];
                end else if (k < NC + N1) begin : g_b1
                    assign col[s + 1][c][k] = g_st[s].g_col[c - 1].cnt[k - NC][1];
                end else if (k < NC + N1 + N2) begin : g_b2
                    assign col[s + 1][c][k] = g_st[s].g_col[c - 2].cnt[k - NC - N1][2];
                end else if (k < NC + N1 + N2 + H - U) begin : g_rest
                    assign col[s + 1][c][k] = col[s][c][U + k - NC - N1 - N2];
                end else begin : g_zero
                    assign col[s + 1][c][k] = '0;
                end
            end
        end
    end

    // R4: the two rows left, added
    logic [OW-1:0] row0 [0:PE-1];
    logic [OW-1:0] row1 [0:PE-1];
    always_comb begin
        for (int p = 0; p < PE; p++)
            for (int c = 0; c < OW; c++) begin
                row0[p][c] = col[S][c][0][p];
                row1[p][c] = col[S][c][1][p];
            end
    end
    logic signed [AW-1:0] dot [0:PE-1];
    always_ff @(posedge clk) begin
        if (!stall) for (int p = 0; p < PE; p++) dot[p] <= AW'(row0[p] + row1[p]);
    end

    // ---- R5: accumulate; acc2 holds the completed sum for the threshold stage
    logic signed [AW-1:0] acc [0:PE-1];
    logic signed [AW-1:0] acc2 [0:PE-1];
    logic v5;
    logic [TW-1:0] t_q, t_q2;  // the thresholds of the step in R5, and in R6
    always_ff @(posedge clk) begin
        if (!stall) begin
            t_q <= tmem[nf3];
            t_q2 <= t_q;
            for (int p = 0; p < PE; p++) begin
                logic signed [AW-1:0] start;
                start = KC;
                if (N_THRESH > 0) start = KC - AW'($signed(t_q[p*N_THRESH*T_BITS +: T_BITS]));
                if (v4) acc[p] <= (first4 ? start : acc[p]) + dot[p];
                acc2[p] <= (first4 ? start : acc[p]) + dot[p];
            end
        end
    end
    always_ff @(posedge clk) begin
        if (!rst_n) v5 <= 1'b0;
        else if (!stall) v5 <= v4 && last4;
    end

    // ---- R6: thresholds, then the output register
    logic [PE*OUT_BITS-1:0] y;
    always_comb begin
        for (int p = 0; p < PE; p++) begin
            if (N_THRESH == 0) begin
                y[p*OUT_BITS +: OUT_BITS] = acc2[p][OUT_BITS-1:0];
            end else begin
                logic [KB-1:0] c;
                logic signed [AW-1:0] th;
                c = KB'(!acc2[p][AW-1]);  // sum - T[0] >= 0
                for (int k = 1; k < N_THRESH; k++) begin
                    th = AW'($signed(t_q2[(p*N_THRESH + k)*T_BITS +: T_BITS]));
                    c = c + ((acc2[p] >= th) ? 1 : 0);
                end
                if (OUT_BIPOLAR) y[p*OUT_BITS +: OUT_BITS] = OUT_BITS'(c);
                else y[p*OUT_BITS +: OUT_BITS] = OUT_BITS'($signed({1'b0, c}) + OUT_BIAS);
            end
        end
    end

    assign stall = m_tvalid && !m_tready;
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            m_tvalid <= 1'b0;
        end else if (!stall) begin
            m_tvalid <= v5;
            if (v5) m_tdata <= y;
        end
    end
endmodule
