// taper UART transmitter: 8N1, LSB first, CLKS_PER_BIT clock cycles per bit.
// A byte is taken when `valid && ready`; `ready` is high while the line is idle.
module taper_uart_tx #(
    parameter int CLKS_PER_BIT = 217
) (
    input  logic       clk,
    input  logic       rst_n,
    input  logic [7:0] data,
    input  logic       valid,
    output logic       ready,
    output logic       tx
);
    localparam int CB = $clog2(CLKS_PER_BIT + 1);
    logic [8:0] shift;  // data bits then the stop bit; the start bit goes out on load
    logic [3:0] bits_left;
    logic [CB-1:0] count;
    assign ready = (bits_left == '0);
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            tx <= 1'b1;
            bits_left <= '0;
            count <= '0;
            shift <= '1;
        end else if (valid && ready) begin
            tx <= 1'b0;
            shift <= {1'b1, data};
            bits_left <= 4'd10;
            count <= '0;
        end else if (bits_left != '0) begin
            if (count == CB'(CLKS_PER_BIT - 1)) begin
                count <= '0;
                bits_left <= bits_left - 1'b1;
                // after the stop bit the line stays high (shift is refilled with ones)
                tx <= shift[0];
                shift <= {1'b1, shift[8:1]};
            end else count <= count + 1'b1;
        end
    end
endmodule
