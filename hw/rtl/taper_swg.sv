// taper sliding-window generator (im2col on a stream): the input of a K x K convolution.
//
// Input: frames of IFM_DIM x IFM_DIM pixels of C channels, row-major, channels-last, SIMD
// channels per word (C % SIMD == 0, channel c = cf*SIMD + lane, lane 0 in the low bits):
// IN_WORDS = IFM_DIM^2 * CF words per frame, CF = C/SIMD.
// Output: for every output pixel (oy, ox) in row-major order, OFM_DIM = (IFM_DIM + 2*PAD - K)/S
// + 1 (floor), the K*K*C window elements in (ky, kx, c) order, c fastest, SIMD per word:
// OUT_WORDS = OFM_DIM^2 * K*K*CF words per frame (the row order of FINN's im2col and of its
// MVAU weight matrix). The window of (oy, ox) reads input pixel (oy*S - PAD + ky,
// ox*S - PAD + kx); outside the image every element is PAD_VALUE (the zero padding of the
// convolution, inside this unit: the stream carries only the real pixels).
//
// Line buffer: LINES rows of IFM_DIM*CF words in one memory with one write port (input) and
// one registered read port (output), block RAM friendly; input row g of the stream (counted
// over frames) goes to row slot g mod LINES. Output row r of a frame needs input rows
// lo(r) .. hi(r)-1 of it,
//   lo(r) = clamp(r*S - PAD, 0, IFM_DIM),  hi(r) = clamp(r*S - PAD + K, 0, IFM_DIM).
// LINES is a power of two; by default the smallest >= max(K + S, IFM_DIM + hi(0) -
// lo(OFM_DIM-1)): the writer can then run S rows past the current window, and at a frame's
// last output row hold the next frame's first window rows (3x3, S 1: 8 rows; LINES = K + 1
// also works, at the throughput the rules below give).
//
// Cycle behaviour (exact; t counts clock cycles, both sides decided on the state registered at
// the start of the cycle):
//  * s_tready = (input rows complete) - (frame's first row + lo(current output row)) < LINES:
//    an input word is taken whenever its row overwrites no row that the current output row
//    or a later one needs. The writer runs on into the next frame's rows as far as that
//    allows: input is accepted while output is emitted.
//  * The reader issues one read per cycle (the window elements of the current output row, in
//    order) unless the output is stalled (m_tvalid && !m_tready). Before the first element of
//    an output row it waits until every input row < hi(r) of its frame is complete: a row
//    whose last word is taken at cycle t lets an output row start issuing at t + 1 (a row
//    wholly in the padding waits for the previous frames' rows only). No bubble between
//    output rows or frames.
//  * An element issued at cycle t is m_tdata at t + 1 (m_tvalid is a register), held while
//    m_tready is low (the read port and every reader counter stall with it).
// Never stalled (input always valid, output always ready, from cycle 0 after reset):
//  * the first output word is at cycle hi(0) * IFM_DIM*CF + 1 (hi(0) = 0: cycle 1);
//  * with the default LINES, the steady state is one frame every max(IN_WORDS, OUT_WORDS)
//    cycles (output-bound when OUT_WORDS >= IN_WORDS: the writer then waits on the line
//    buffer; input-bound otherwise: the reader waits for rows), checked with these rules'
//    cycle model (compiler/sim/cycles.py) for every IFM_DIM 4..9, K 1..5, S 1..2, PAD 0..2,
//    CF 1..4, and every handshake of the model against this RTL on a sample, stalled too
//    (tests/test_cnn_rtl.py).
module taper_swg #(
    parameter IFM_DIM = 8,
    parameter C = 4,
    parameter SIMD = 2,
    parameter ELEM_BITS = 2,
    parameter K = 3,
    parameter S = 1,
    parameter PAD = 0,
    parameter PAD_VALUE = 0,
    parameter LINES = 0,            // line buffer rows, a power of two > K; 0: default
    parameter RAM_STYLE = "block"   // "block" or "distributed"
) (
    input  logic                       clk,
    input  logic                       rst_n,
    input  logic [SIMD*ELEM_BITS-1:0]  s_tdata,
    input  logic                       s_tvalid,
    output logic                       s_tready,
    output logic [SIMD*ELEM_BITS-1:0]  m_tdata,
    output logic                       m_tvalid,
    input  logic                       m_tready
);
    localparam CF = C / SIMD;
    localparam WW = SIMD * ELEM_BITS;
    localparam OFM = (IFM_DIM + 2 * PAD - K) / S + 1;
    localparam ROWW = IFM_DIM * CF;
    // default line buffer: the writer may run K + S rows ahead of the rows being read, and
    // at a frame's last output row far enough to hold the next frame's first window rows
    localparam TOP_LAST = (OFM - 1) * S - PAD;
    localparam LO_LAST = (TOP_LAST < 0) ? 0 : ((TOP_LAST > IFM_DIM) ? IFM_DIM : TOP_LAST);
    localparam HI_FIRST = (K - PAD < 0) ? 0 : ((K - PAD > IFM_DIM) ? IFM_DIM : K - PAD);
    localparam R_WRAP = IFM_DIM + HI_FIRST - LO_LAST;
    localparam R_MIN = (R_WRAP > K + S) ? R_WRAP : K + S;
    localparam R = (LINES > 0) ? LINES : (1 << $clog2(R_MIN));
    localparam LB = (R > 1) ? $clog2(R) : 1;
    localparam DEPTH = R * ROWW;
    localparam AB = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    // signed row/column arithmetic: differences of row counts stay within +-(IFM_DIM + R + ..)
    localparam CW = $clog2(4 * (IFM_DIM + 2 * PAD + K + S + R + CF)) + 2;
    localparam logic signed [CW-1:0] SIFM = CW'(IFM_DIM);
    localparam logic signed [CW-1:0] SPAD = CW'(PAD);
    localparam logic signed [CW-1:0] SK = CW'(K);
    localparam logic signed [CW-1:0] SS = CW'(S);
    localparam logic signed [CW-1:0] SR = CW'(R);
    localparam [WW-1:0] PADW = {SIMD{ELEM_BITS'(PAD_VALUE)}};

    (* ram_style = RAM_STYLE *) logic [WW-1:0] mem [0:DEPTH-1];

    // ---- writer: row count wrow (over frames, mod 2^CW), word wx within the row
    logic signed [CW-1:0] wrow;
    logic [CW-1:0] wx;
    // ---- reader: frame's first row rbase (same count), output pixel, window position
    logic signed [CW-1:0] rbase, oy, ox, ky, kx, cf;
    logic running;  // the current output row has started
    logic v1, pad1;
    logic [WW-1:0] rd_q;

    wire signed [CW-1:0] ytop = oy * SS - SPAD;
    wire signed [CW-1:0] lo = (ytop < 0) ? '0 : ((ytop > SIFM) ? SIFM : ytop);
    wire signed [CW-1:0] hi = (ytop + SK < 0) ? '0 : ((ytop + SK > SIFM) ? SIFM : ytop + SK);
    wire signed [CW-1:0] done_rows = wrow - rbase;  // rows of this frame complete
    wire signed [CW-1:0] ahead = done_rows - lo;

    assign s_tready = ahead < SR;
    wire wr = s_tvalid && s_tready;
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            wrow <= '0;
            wx <= '0;
        end else if (wr) begin
            if (wx == CW'(ROWW - 1)) begin
                wx <= '0;
                wrow <= wrow + 1'b1;
            end else begin
                wx <= wx + 1'b1;
            end
        end
    end
    wire [LB-1:0] wslot = wrow[LB-1:0];
    always_ff @(posedge clk)
        if (wr) mem[AB'(32'(wslot) * ROWW + 32'(wx))] <= s_tdata;

    // ---- reader
    wire stall = m_tvalid && !m_tready;
    wire can = running || (done_rows >= hi);
    wire issue = can && !stall;
    wire signed [CW-1:0] yf = ytop + ky;
    wire signed [CW-1:0] xf = ox * SS - SPAD + kx;
    wire pad = (yf < 0) || (yf >= SIFM) || (xf < 0) || (xf >= SIFM);
    wire [CW-1:0] yg = rbase + yf;
    wire [LB-1:0] rslot = yg[LB-1:0];
    wire [AB-1:0] raddr = AB'(32'(rslot) * ROWW + 32'(xf[CW-2:0]) * CF + 32'(cf));

    wire last_cf = cf == CW'(CF - 1);
    wire last_kx = kx == CW'(K - 1);
    wire last_ky = ky == CW'(K - 1);
    wire last_ox = ox == CW'(OFM - 1);
    wire last_oy = oy == CW'(OFM - 1);
    wire row_end = last_cf && last_kx && last_ky && last_ox;

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            rbase <= '0;
            oy <= '0;
            ox <= '0;
            ky <= '0;
            kx <= '0;
            cf <= '0;
            running <= 1'b0;
            v1 <= 1'b0;
        end else if (!stall) begin
            v1 <= issue;
            if (issue) begin
                running <= !row_end;
                cf <= last_cf ? '0 : cf + 1'b1;
                if (last_cf) begin
                    kx <= last_kx ? '0 : kx + 1'b1;
                    if (last_kx) begin
                        ky <= last_ky ? '0 : ky + 1'b1;
                        if (last_ky) begin
                            ox <= last_ox ? '0 : ox + 1'b1;
                            if (last_ox) begin
                                oy <= last_oy ? '0 : oy + 1'b1;
                                if (last_oy) rbase <= rbase + SIFM;
                            end
                        end
                    end
                end
            end
        end
    end
    always_ff @(posedge clk) begin
        if (issue) begin
            rd_q <= mem[raddr];
            pad1 <= pad;
        end
    end
    assign m_tvalid = v1;
    assign m_tdata = pad1 ? PADW : rd_q;
endmodule
