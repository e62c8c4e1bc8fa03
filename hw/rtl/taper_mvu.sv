// taper matrix-vector-threshold unit: one fully connected layer of the dataflow pipeline.
//
// Computes, for every input vector of MW elements (streamed as MW/SIMD words of SIMD
// elements), MH outputs (streamed as MH/PE words of PE elements):
//   acc[o] = sum_i W[o][i] * x[i]        (XNOR: popcount of x[i] == W[o][i])
//   y[o]   = count_k(acc[o] >= T[o][k]) + OUT_BIAS   (OUT_BIPOLAR: 1 bit, 1 = +1)
// or y[o] = acc[o] without thresholds (N_THRESH = 0).
// Neuron o = nf*PE + pe, input i = sf*SIMD + simd; lane 0 is in the low bits of a word.
//
// Folding: NF = MH/PE neuron folds x SF = MW/SIMD synapse folds = NF*SF cycles per frame.
// The input vector is double-buffered, so the next frame streams in while this one is
// computed and the unit sustains one frame every NF*SF cycles. Weights and thresholds are
// ROMs with a registered read port (block RAM when large). The pipeline (issue, two read
// registers, adder tree, accumulator, threshold/output register) stalls as a whole while the
// output word is not taken, which keeps it correct under any backpressure.
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
    parameter T_BITS = 16,      // signed threshold width (>= ACC_BITS)
    parameter OUT_BITS = 16,
    parameter OUT_BIAS = 0,
    parameter OUT_BIPOLAR = 0,
    parameter WEIGHT_FILE = "weights.mem",
    parameter THRESH_FILE = "thresholds.mem"
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

    // ---- parameter memories
    logic [WW-1:0] wmem [0:NF*SF-1];
    logic [TW-1:0] tmem [0:NF-1];
    initial begin
        $readmemh(WEIGHT_FILE, wmem);
        if (N_THRESH > 0) $readmemh(THRESH_FILE, tmem);
    end

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
    //   R1 registered reads of weights and input word (block RAM read port)
    //   R2 the same, registered again (block RAM output register: the read is slow)
    //   R3 the SIMD products of each PE summed by an adder tree
    //   R4 accumulators (and the thresholds' registered read)
    //   R5 thresholds applied: the output register
    logic [WW-1:0] w_q, w_r;
    logic [SIMD*IN_BITS-1:0] x_q, x_r;
    logic v1, v2, v3, first1, first2, first3, last1, last2, last3;
    logic [NB-1:0] nf1, nf2, nf3;
    always_ff @(posedge clk) begin
        if (!stall) begin
            w_q <= wmem[waddr];
            x_q <= ibuf[{rb, sf}];
            w_r <= w_q;
            x_r <= x_q;
        end
    end
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            v1 <= 1'b0;
            v2 <= 1'b0;
            v3 <= 1'b0;
        end else if (!stall) begin
            v1 <= issue;
            v2 <= v1;
            v3 <= v2;
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
        end
    end

    // ---- R3: SIMD products per PE, summed by a balanced adder tree (log2 SIMD adders deep;
    // the leaves are narrow and synthesis trims each sum to the bits it can reach)
    localparam LEAVES = 1 << $clog2(SIMD);
    logic signed [ACC_BITS-1:0] tree [0:PE-1][1:2*LEAVES-1];
    always_comb begin
        for (int p = 0; p < PE; p++) begin
            for (int s = 0; s < LEAVES; s++) begin
                logic [IN_BITS-1:0] xe;
                logic [W_BITS-1:0] we;
                logic signed [IN_BITS:0] xs;
                logic signed [W_BITS:0] ws;
                logic signed [ACC_BITS-1:0] pr;
                pr = '0;
                if (s < SIMD) begin
                    xe = x_r[s*IN_BITS +: IN_BITS];
                    we = w_r[(p*SIMD + s)*W_BITS +: W_BITS];
                    xs = IN_SIGNED ? $signed({xe[IN_BITS-1], xe}) : $signed({1'b0, xe});
                    if (W_BIPOLAR) ws = we[0] ? 1 : -1;
                    else ws = W_SIGNED ? $signed({we[W_BITS-1], we}) : $signed({1'b0, we});
                    if (XNOR) pr = (xe[0] == we[0]) ? 1 : 0;
                    else if (IN_BIPOLAR) pr = xe[0] ? ws : -ws;
                    else pr = xs * ws;  // full product: ACC_BITS context
                end
                tree[p][LEAVES + s] = pr;
            end
            for (int i = LEAVES - 1; i >= 1; i--) tree[p][i] = tree[p][2*i] + tree[p][2*i+1];
        end
    end

    logic signed [ACC_BITS-1:0] dot [0:PE-1];
    always_ff @(posedge clk) begin
        if (!stall) for (int p = 0; p < PE; p++) dot[p] <= tree[p][1];
    end

    // ---- R4: accumulate; acc2 holds the completed sum for the threshold stage
    logic signed [ACC_BITS-1:0] acc [0:PE-1];
    logic signed [ACC_BITS-1:0] acc2 [0:PE-1];
    logic v4;
    logic [TW-1:0] t_q;
    always_ff @(posedge clk) begin
        if (!stall) begin
            t_q <= tmem[nf3];
            for (int p = 0; p < PE; p++) begin
                if (v3) acc[p] <= (first3 ? '0 : acc[p]) + dot[p];
                acc2[p] <= (first3 ? '0 : acc[p]) + dot[p];
            end
        end
    end
    always_ff @(posedge clk) begin
        if (!rst_n) v4 <= 1'b0;
        else if (!stall) v4 <= v3 && last3;
    end

    // ---- R5: thresholds, then the output register
    logic [PE*OUT_BITS-1:0] y;
    always_comb begin
        for (int p = 0; p < PE; p++) begin
            if (N_THRESH == 0) begin
                y[p*OUT_BITS +: OUT_BITS] = acc2[p][OUT_BITS-1:0];
            end else begin
                logic [KB-1:0] c;
                logic signed [T_BITS-1:0] a;
                logic signed [T_BITS-1:0] th;
                a = acc2[p];
                c = '0;
                for (int k = 0; k < N_THRESH; k++) begin
                    th = t_q[(p*N_THRESH + k)*T_BITS +: T_BITS];
                    c = c + ((a >= th) ? 1 : 0);
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
            m_tvalid <= v4;
            if (v4) m_tdata <= y;
        end
    end
endmodule
