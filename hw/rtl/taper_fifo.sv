// taper stream FIFO: DEPTH words of WIDTH bits, first word visible at the output.
module taper_fifo #(
    parameter WIDTH = 8,
    parameter DEPTH = 2
) (
    input  logic             clk,
    input  logic             rst_n,
    input  logic [WIDTH-1:0] s_tdata,
    input  logic             s_tvalid,
    output logic             s_tready,
    output logic [WIDTH-1:0] m_tdata,
    output logic             m_tvalid,
    input  logic             m_tready
);
    localparam PB = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    logic [WIDTH-1:0] mem [0:DEPTH-1];
    logic [PB-1:0] rd, wr;
    logic [PB:0] count;
    assign s_tready = (count != (PB+1)'(DEPTH));
    assign m_tvalid = (count != '0);
    assign m_tdata = mem[rd];
    wire push = s_tvalid && s_tready;
    wire pop = m_tvalid && m_tready;
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            rd <= '0;
            wr <= '0;
            count <= '0;
        end else begin
            if (push) begin
                mem[wr] <= s_tdata;
                wr <= (wr == PB'(DEPTH - 1)) ? '0 : wr + 1'b1;
            end
            if (pop) rd <= (rd == PB'(DEPTH - 1)) ? '0 : rd + 1'b1;
            count <= count + (push ? 1'b1 : 1'b0) - (pop ? 1'b1 : 1'b0);
        end
    end
endmodule
