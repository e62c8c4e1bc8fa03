// taper max pooling, K x K windows with stride K (non-overlapping, FINN's StreamingMaxPool).
//
// Input: frames of IFM_DIM x IFM_DIM pixels of C channels, row-major, channels-last, PE
// channels per word (C % PE == 0, channel c = cf*PE + lane, lane 0 in the low bits):
// IN_WORDS = IFM_DIM^2 * CF words per frame, CF = C/PE. Output: OFM_DIM = IFM_DIM / K (floor,
// as PyTorch's MaxPool2d without ceil_mode: the last IFM_DIM % K rows and columns are read and
// dropped) pixels per row, row-major, channels-last, PE per word: OUT_WORDS = OFM_DIM^2 * CF.
// y[oy][ox][c] = max over ky, kx < K of x[oy*K + ky][ox*K + kx][c], elements ELEM_BITS wide,
// two's complement when SIGNED, else unsigned.
//
// One row of partial maxima (OFM_DIM * CF words) in a memory read asynchronously (LUT RAM:
// a word is read, compared and written back in the cycle it arrives, so consecutive words of
// one window need no forwarding).
//
// Cycle behaviour (exact): an input word is taken in any cycle in which s_tvalid is high,
// unless it completes a window (ky = kx = K-1, in_sq the OFM_DIM*K square) while the output
// register holds a word that is not taken this cycle (m_tvalid && !m_tready). A window's
// output word is m_tdata from the cycle after its last input word was taken. Never stalled,
// a frame takes exactly IN_WORDS cycles (one input word per cycle) and frames follow back
// to back; the last output word of a frame is out one cycle after the frame's last complete
// window's last word (the dropped rows, if any, still take their cycles).
module taper_maxpool #(
    parameter IFM_DIM = 8,
    parameter C = 4,
    parameter PE = 2,
    parameter ELEM_BITS = 4,
    parameter SIGNED = 0,
    parameter K = 2
) (
    input  logic                     clk,
    input  logic                     rst_n,
    input  logic [PE*ELEM_BITS-1:0]  s_tdata,
    input  logic                     s_tvalid,
    output logic                     s_tready,
    output logic [PE*ELEM_BITS-1:0]  m_tdata,
    output logic                     m_tvalid,
    input  logic                     m_tready
);
    localparam CF = C / PE;
    localparam WW = PE * ELEM_BITS;
    localparam OFM = IFM_DIM / K;
    localparam DEPTH = OFM * CF;
    localparam AB = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam XB = $clog2(IFM_DIM + 1);
    localparam FB = (CF > 1) ? $clog2(CF) : 1;
    localparam KB = $clog2(K + 1);

    (* ram_style = "distributed" *) logic [WW-1:0] acc [0:DEPTH-1];

    // position of the next input word: pixel (y, x), channel fold cf; window offsets ky, kx
    // and output column ox kept alongside (no division)
    logic [XB-1:0] y, x, ox;
    logic [KB-1:0] ky, kx;
    logic [FB-1:0] cf;

    wire in_sq = (y < XB'(OFM * K)) && (x < XB'(OFM * K));
    wire first = (ky == '0) && (kx == '0);
    wire emit = in_sq && (ky == KB'(K - 1)) && (kx == KB'(K - 1));
    assign s_tready = !(emit && m_tvalid && !m_tready);
    wire take = s_tvalid && s_tready;

    wire [AB-1:0] addr = AB'(32'(ox) * CF + 32'(cf));
    wire [WW-1:0] old = acc[addr];
    logic [WW-1:0] nxt;
    always_comb begin
        for (int l = 0; l < PE; l++) begin
            logic [ELEM_BITS-1:0] a, b;
            logic a_gt;
            a = s_tdata[l*ELEM_BITS +: ELEM_BITS];
            b = old[l*ELEM_BITS +: ELEM_BITS];
            if (SIGNED != 0) a_gt = $signed(a) > $signed(b);
            else a_gt = a > b;
            nxt[l*ELEM_BITS +: ELEM_BITS] = (first || a_gt) ? a : b;
        end
    end

    always_ff @(posedge clk)
        if (take && in_sq) acc[addr] <= nxt;

    wire last_cf = cf == FB'(CF - 1);
    wire last_x = x == XB'(IFM_DIM - 1);
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            y <= '0;
            x <= '0;
            ox <= '0;
            ky <= '0;
            kx <= '0;
            cf <= '0;
            m_tvalid <= 1'b0;
        end else begin
            if (m_tready) m_tvalid <= 1'b0;
            if (take) begin
                if (emit) m_tvalid <= 1'b1;
                cf <= last_cf ? '0 : cf + 1'b1;
                if (last_cf) begin
                    if (last_x) begin
                        x <= '0;
                        kx <= '0;
                        ox <= '0;
                        y <= (y == XB'(IFM_DIM - 1)) ? '0 : y + 1'b1;
                        ky <= (y == XB'(IFM_DIM - 1) || ky == KB'(K - 1)) ? '0 : ky + 1'b1;
                    end else begin
                        x <= x + 1'b1;
                        kx <= (kx == KB'(K - 1)) ? '0 : kx + 1'b1;
                        if (kx == KB'(K - 1)) ox <= ox + 1'b1;
                    end
                end
            end
        end
    end
    always_ff @(posedge clk)
        if (take && emit) m_tdata <= nxt;
endmodule
