// taper UART receiver: 8N1, LSB first, CLKS_PER_BIT clock cycles per bit (>= 4).
// `valid` pulses for one cycle with `data` when a byte with a good stop bit arrived; a byte
// whose stop bit is 0 (a break, a baud mismatch) pulses `frame_error` instead and is dropped.
module taper_uart_rx #(
    parameter int CLKS_PER_BIT = 217
) (
    input  logic       clk,
    input  logic       rst_n,
    input  logic       rx,
    output logic [7:0] data,
    output logic       valid,
    output logic       frame_error
);
    localparam int CB = $clog2(CLKS_PER_BIT + 1);
    typedef enum logic [1:0] {IDLE, START, BITS, STOP} state_t;
    state_t state;
    // two flip-flops: rx comes from another clock domain (the FTDI chip)
    logic rx_meta, rx_s;
    logic [CB-1:0] count;
    logic [2:0] bit_idx;
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            rx_meta <= 1'b1;
            rx_s <= 1'b1;
            state <= IDLE;
            count <= '0;
            bit_idx <= '0;
            valid <= 1'b0;
            frame_error <= 1'b0;
        end else begin
            rx_meta <= rx;
            rx_s <= rx_meta;
            valid <= 1'b0;
            frame_error <= 1'b0;
            case (state)
                IDLE: if (!rx_s) begin
                    state <= START;
                    count <= '0;
                end
                // the middle of the start bit: every later sample is taken mid-bit
                START: if (count == CB'(CLKS_PER_BIT / 2 - 1)) begin
                    count <= '0;
                    bit_idx <= '0;
                    state <= rx_s ? IDLE : BITS;  // a glitch shorter than half a bit
                end else count <= count + 1'b1;
                BITS: if (count == CB'(CLKS_PER_BIT - 1)) begin
                    count <= '0;
                    data <= {rx_s, data[7:1]};
                    bit_idx <= bit_idx + 1'b1;
                    if (bit_idx == 3'd7) state <= STOP;
                end else count <= count + 1'b1;
                // back to IDLE at the middle of the stop bit: the next start bit may follow
                // a sender whose clock runs a little fast
                STOP: if (count == CB'(CLKS_PER_BIT - 1)) begin
                    count <= '0;
                    state <= IDLE;
                    if (rx_s) valid <= 1'b1;
                    else frame_error <= 1'b1;
                end else count <= count + 1'b1;
            endcase
        end
    end
endmodule
