// taper shell registers: an AXI4-Lite slave (8-bit byte addresses, 32-bit data) with the
// stream counters a board driver reads to measure latency and II on chip.
//
//   0x00 MAGIC             RO  0x74617072 ("tapr")
//   0x04 CONTROL           WO  write bit 0 = 1: clear every counter below (reads 0)
//   0x08 FRAMES_IN         RO  input words accepted since clear / IN_WORDS
//   0x0C FRAMES_OUT        RO  output frames (the accelerator's TLAST handshakes) since clear
//   0x10 CYCLES            RO  cycles since clear (free-running, wraps at 2^32)
//   0x14 FIRST_IN          RO  CYCLES at the first input handshake since clear
//   0x18 FIRST_LAST        RO  CYCLES at the first output TLAST handshake since clear
//   0x1C LAST_LAST         RO  CYCLES at the latest output TLAST handshake
//   0x20 IN_WORDS          RO  stream words per input frame (constant)
//   0x24 OUT_WORDS         RO  stream words per output frame (constant)
//   0x28 FRAMES_PER_TLAST  RW  output frames per DMA packet (reset 1; 0 acts as 1): the
//                              shell's m_axis_tlast closes a packet of that many frames, so
//                              an AXI DMA S2MM transfer (which ends at TLAST) takes a batch.
//                              Writing it restarts the packet count.
//
// Latency = FIRST_LAST - FIRST_IN + 1; II = (LAST_LAST - FIRST_LAST) / (FRAMES_OUT - 1)
// (modulo 2^32). An event in the cycle of a clear is not counted. Unmapped addresses read 0;
// every response is OKAY. One transaction per channel at a time (AW and W may arrive in
// either order).
module taper_axil_regs #(
    parameter int IN_WORDS = 1,
    parameter int OUT_WORDS = 1
) (
    input  logic        clk,
    input  logic        rst_n,
    // AXI4-Lite slave
    input  logic [7:0]  s_axil_awaddr,
    input  logic        s_axil_awvalid,
    output logic        s_axil_awready,
    input  logic [31:0] s_axil_wdata,
    input  logic [3:0]  s_axil_wstrb,
    input  logic        s_axil_wvalid,
    output logic        s_axil_wready,
    output logic [1:0]  s_axil_bresp,
    output logic        s_axil_bvalid,
    input  logic        s_axil_bready,
    input  logic [7:0]  s_axil_araddr,
    input  logic        s_axil_arvalid,
    output logic        s_axil_arready,
    output logic [31:0] s_axil_rdata,
    output logic [1:0]  s_axil_rresp,
    output logic        s_axil_rvalid,
    input  logic        s_axil_rready,
    // stream events
    input  logic        in_fire,    // an input word handshake
    input  logic        frame_end,  // an output handshake carrying the accelerator's TLAST
    output logic        tlast_en    // the current output frame closes a DMA packet
);
    localparam logic [31:0] MAGIC = 32'h74617072;
    localparam int WB = (IN_WORDS > 1) ? $clog2(IN_WORDS) : 1;

    logic [31:0] cycles, frames_in, frames_out, first_in, first_last, last_last;
    logic [31:0] frames_per_tlast, pkt_frames;
    logic [WB-1:0] in_word;
    logic seen_in, seen_last;

    // ------------------------------------------------------------------ write channel
    logic aw_ok, w_ok;
    logic [7:0] aw_addr;
    logic [31:0] w_data;
    logic [3:0] w_strb;
    assign s_axil_awready = !aw_ok && !s_axil_bvalid;
    assign s_axil_wready = !w_ok && !s_axil_bvalid;
    assign s_axil_bresp = 2'b00;
    wire do_write = aw_ok && w_ok;
    wire [5:0] w_reg = aw_addr[7:2];
    wire clear = do_write && w_reg == 6'h01 && w_strb[0] && w_data[0];
    wire set_fpt = do_write && w_reg == 6'h0A;

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            aw_ok <= 1'b0;
            w_ok <= 1'b0;
            aw_addr <= '0;
            w_data <= '0;
            w_strb <= '0;
            s_axil_bvalid <= 1'b0;
        end else begin
            if (s_axil_awvalid && s_axil_awready) begin
                aw_ok <= 1'b1;
                aw_addr <= s_axil_awaddr;
            end
            if (s_axil_wvalid && s_axil_wready) begin
                w_ok <= 1'b1;
                w_data <= s_axil_wdata;
                w_strb <= s_axil_wstrb;
            end
            if (do_write) begin
                aw_ok <= 1'b0;
                w_ok <= 1'b0;
                s_axil_bvalid <= 1'b1;
            end else if (s_axil_bvalid && s_axil_bready) begin
                s_axil_bvalid <= 1'b0;
            end
        end
    end

    // ------------------------------------------------------------------ counters
    wire [31:0] fpt = (frames_per_tlast == 32'd0) ? 32'd1 : frames_per_tlast;
    assign tlast_en = (pkt_frames == fpt - 32'd1);

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            cycles <= '0;
            frames_in <= '0;
            frames_out <= '0;
            first_in <= '0;
            first_last <= '0;
            last_last <= '0;
            in_word <= '0;
            seen_in <= 1'b0;
            seen_last <= 1'b0;
            frames_per_tlast <= 32'd1;
            pkt_frames <= '0;
        end else if (clear) begin
            cycles <= '0;
            frames_in <= '0;
            frames_out <= '0;
            first_in <= '0;
            first_last <= '0;
            last_last <= '0;
            in_word <= '0;
            seen_in <= 1'b0;
            seen_last <= 1'b0;
            pkt_frames <= '0;
        end else begin
            cycles <= cycles + 32'd1;
            if (in_fire) begin
                if (!seen_in) first_in <= cycles;
                seen_in <= 1'b1;
                if (in_word == WB'(IN_WORDS - 1)) begin
                    in_word <= '0;
                    frames_in <= frames_in + 32'd1;
                end else begin
                    in_word <= in_word + 1'b1;
                end
            end
            if (frame_end) begin
                if (!seen_last) first_last <= cycles;
                seen_last <= 1'b1;
                last_last <= cycles;
                frames_out <= frames_out + 32'd1;
                pkt_frames <= tlast_en ? '0 : pkt_frames + 32'd1;
            end
            if (set_fpt) begin
                for (int b = 0; b < 4; b++)
                    if (w_strb[b]) frames_per_tlast[8*b +: 8] <= w_data[8*b +: 8];
                pkt_frames <= '0;
            end
        end
    end

    // ------------------------------------------------------------------ read channel
    logic [31:0] r_value;
    always_comb begin
        case (s_axil_araddr[7:2])
            6'h00: r_value = MAGIC;
            6'h02: r_value = frames_in;
            6'h03: r_value = frames_out;
            6'h04: r_value = cycles;
            6'h05: r_value = first_in;
            6'h06: r_value = first_last;
            6'h07: r_value = last_last;
            6'h08: r_value = 32'(IN_WORDS);
            6'h09: r_value = 32'(OUT_WORDS);
            6'h0A: r_value = frames_per_tlast;
            default: r_value = 32'd0;
        endcase
    end
    assign s_axil_arready = !s_axil_rvalid;
    assign s_axil_rresp = 2'b00;
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            s_axil_rvalid <= 1'b0;
            s_axil_rdata <= '0;
        end else if (s_axil_arvalid && s_axil_arready) begin
            s_axil_rvalid <= 1'b1;
            s_axil_rdata <= r_value;
        end else if (s_axil_rvalid && s_axil_rready) begin
            s_axil_rvalid <= 1'b0;
        end
    end
endmodule
