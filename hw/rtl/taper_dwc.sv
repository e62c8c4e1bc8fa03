// taper data width converter: words of IN_ELEMS elements in, words of OUT_ELEMS out
// (ELEM_BITS each, element 0 in the low bits), any ratio, order preserved.
module taper_dwc #(
    parameter ELEM_BITS = 2,
    parameter IN_ELEMS = 4,
    parameter OUT_ELEMS = 2
) (
    input  logic                           clk,
    input  logic                           rst_n,
    input  logic [IN_ELEMS*ELEM_BITS-1:0]  s_tdata,
    input  logic                           s_tvalid,
    output logic                           s_tready,
    output logic [OUT_ELEMS*ELEM_BITS-1:0] m_tdata,
    output logic                           m_tvalid,
    input  logic                           m_tready
);
    // Ready while count <= OUT + IN - 1, whatever the output does this cycle: the count an
    // output word leaves behind (< IN when streaming) then never blocks the next input word,
    // so a stream runs at max(IN, OUT) elements a cycle for any ratio (ready at count <= OUT
    // lost a cycle whenever the count overshot OUT: 2 -> 9 elements took 10 cycles per 9
    // words). Room: count + IN <= OUT + 2*IN - 1.
    localparam CAP = OUT_ELEMS + 2 * IN_ELEMS - 1;
    localparam CB = $clog2(CAP + 1);
    logic [CAP*ELEM_BITS-1:0] buffer;
    logic [CB-1:0] count;
    assign s_tready = (count <= CB'(OUT_ELEMS + IN_ELEMS - 1));
    assign m_tvalid = (count >= CB'(OUT_ELEMS));
    assign m_tdata = buffer[OUT_ELEMS*ELEM_BITS-1:0];
    wire take_in = s_tvalid && s_tready;
    wire take_out = m_tvalid && m_tready;
    logic [CAP*ELEM_BITS-1:0] shifted, merged;
    logic [CB-1:0] left;
    always_comb begin
        shifted = take_out ? (buffer >> (OUT_ELEMS*ELEM_BITS)) : buffer;
        left = take_out ? count - CB'(OUT_ELEMS) : count;
        merged = shifted;
        if (take_in) merged[left*ELEM_BITS +: IN_ELEMS*ELEM_BITS] = s_tdata;
    end
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            count <= '0;
        end else begin
            buffer <= merged;
            count <= left + (take_in ? CB'(IN_ELEMS) : '0);
        end
    end
endmodule
