// taper multi-thresholding unit: y[c] = count_k(x[c] >= T[c][k]) + OUT_BIAS (OUT_BIPOLAR: 1
// bit, 1 = +1) for C channels streamed as C/PE words of PE elements (channel c = cf*PE + pe,
// lane 0 in the low bits). One word per cycle; thresholds in a ROM with a registered read;
// the pipeline stalls as a whole while the output word is not taken.
module taper_thresholding #(
    parameter C = 8,
    parameter PE = 2,
    parameter IN_BITS = 8,
    parameter IN_SIGNED = 1,
    parameter N_THRESH = 3,
    parameter T_BITS = 9,       // signed threshold width (> IN_BITS when unsigned input)
    parameter OUT_BITS = 2,
    parameter OUT_BIAS = 0,
    parameter OUT_BIPOLAR = 0,
    parameter THRESH_FILE = "thresholds.mem",
    parameter T_STYLE = "auto"  // threshold ROM: "block" (block RAM), "logic" (LUTs) or "auto"
) (
    input  logic                    clk,
    input  logic                    rst_n,
    input  logic [PE*IN_BITS-1:0]   s_tdata,
    input  logic                    s_tvalid,
    output logic                    s_tready,
    output logic [PE*OUT_BITS-1:0]  m_tdata,
    output logic                    m_tvalid,
    input  logic                    m_tready
);
    localparam CF = C / PE;
    localparam FB = (CF > 1) ? $clog2(CF) : 1;
    localparam TW = PE * N_THRESH * T_BITS;
    localparam KB = $clog2(N_THRESH + 1) + 1;

    (* rom_style = T_STYLE, ram_style = T_STYLE *) logic [TW-1:0] tmem [0:CF-1];
    initial $readmemh(THRESH_FILE, tmem);

    logic stall;
    assign stall = m_tvalid && !m_tready;
    assign s_tready = !stall;
    wire take = s_tvalid && s_tready;

    logic [FB-1:0] cf;
    logic [PE*IN_BITS-1:0] x_q;
    logic [TW-1:0] t_q;
    logic v1;
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            cf <= '0;
            v1 <= 1'b0;
        end else if (!stall) begin
            v1 <= take;
            if (take) cf <= (cf == FB'(CF - 1)) ? '0 : cf + 1'b1;
        end
    end
    always_ff @(posedge clk) begin
        if (!stall) begin
            x_q <= s_tdata;
            t_q <= tmem[cf];
        end
    end

    logic [PE*OUT_BITS-1:0] y;
    always_comb begin
        for (int p = 0; p < PE; p++) begin
            logic [IN_BITS-1:0] xe;
            logic signed [T_BITS-1:0] a;
            logic signed [T_BITS-1:0] th;
            logic [KB-1:0] c;
            xe = x_q[p*IN_BITS +: IN_BITS];
            a = IN_SIGNED ? T_BITS'($signed(xe)) : T_BITS'($signed({1'b0, xe}));
            c = '0;
            for (int k = 0; k < N_THRESH; k++) begin
                th = t_q[(p*N_THRESH + k)*T_BITS +: T_BITS];
                c = c + ((a >= th) ? 1 : 0);
            end
            if (OUT_BIPOLAR) y[p*OUT_BITS +: OUT_BITS] = OUT_BITS'(c);
            else y[p*OUT_BITS +: OUT_BITS] = OUT_BITS'($signed({1'b0, c}) + OUT_BIAS);
        end
    end

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            m_tvalid <= 1'b0;
        end else if (!stall) begin
            m_tvalid <= v1;
            if (v1) m_tdata <= y;
        end
    end
endmodule
