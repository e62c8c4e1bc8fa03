// taper UART frame wrapper: frames from a host over a UART into an accelerator's input stream,
// its output stream back as frames.
//
// Frame (both directions; compiler/deploy/serial.py implements the host side):
//   0xA5 | length (2 bytes, little-endian) | payload (length bytes) | CRC (2 bytes, LE)
// The payload is the frame's stream words in order, each ceil(width / 8) bytes little-endian
// (element 0 in the low bits; bits above the width are sent as 0 and ignored). The CRC is
// CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, not reflected, no final XOR) over
// the two length bytes and the payload.
// A rejected frame gets a NAK: 0x15 then a reason byte (1 length is not IN_LEN, 2 CRC
// mismatch, 3 no byte for TIMEOUT_CLKS cycles inside a frame, 4 payload arrived while the
// previous frame was still being fed to the accelerator). Bytes outside a frame are skipped
// until the next 0xA5. The host sends a frame and waits for its reply or NAK.
//
// A whole frame is buffered and checked before its first word enters the accelerator.
module taper_uart_frame #(
    parameter int CLKS_PER_BIT = 217,
    parameter int TIMEOUT_CLKS = 2500000,
    parameter int IN_WIDTH = 8,
    parameter int IN_WORDS = 1,
    parameter int OUT_WIDTH = 8,
    parameter int OUT_WORDS = 1
) (
    input  logic                 clk,
    input  logic                 rst_n,
    input  logic                 uart_rx,
    output logic                 uart_tx,
    // to the accelerator's input
    output logic [IN_WIDTH-1:0]  m_tdata,
    output logic                 m_tvalid,
    input  logic                 m_tready,
    // from the accelerator's output
    input  logic [OUT_WIDTH-1:0] s_tdata,
    input  logic                 s_tvalid,
    output logic                 s_tready,
    input  logic                 s_tlast,
    output logic                 frame_done,  // one cycle: a reply frame was sent
    output logic                 frame_nak    // one cycle: a NAK was sent
);
    localparam logic [7:0] SYNC = 8'hA5;
    localparam logic [7:0] NAK = 8'h15;
    localparam int IN_BYTES = (IN_WIDTH + 7) / 8;
    localparam int OUT_BYTES = (OUT_WIDTH + 7) / 8;
    localparam int IN_LEN = IN_WORDS * IN_BYTES;
    localparam int OUT_LEN = OUT_WORDS * OUT_BYTES;
    localparam int IB = IN_BYTES * 8;
    localparam int OB = OUT_BYTES * 8;
    localparam int WB = $clog2(IN_WORDS + 1);
    localparam int BB = $clog2(IN_BYTES + 1);
    localparam int OBB = $clog2(OUT_BYTES + 1);
    localparam int TB = $clog2(TIMEOUT_CLKS + 1);
    localparam logic [7:0] R_LENGTH = 8'd1, R_CRC = 8'd2, R_TIMEOUT = 8'd3, R_OVERRUN = 8'd4;

    function automatic logic [15:0] crc16(input logic [15:0] c, input logic [7:0] d);
        logic [15:0] x;
        x = c ^ {d, 8'h00};
        for (int i = 0; i < 8; i++) x = x[15] ? ((x << 1) ^ 16'h1021) : (x << 1);
        return x;
    endfunction

    // ------------------------------------------------------------------ receive
    logic [7:0] rx_data;
    logic rx_valid, rx_ferr;
    taper_uart_rx #(.CLKS_PER_BIT(CLKS_PER_BIT)) rx (
        .clk(clk), .rst_n(rst_n), .rx(uart_rx), .data(rx_data), .valid(rx_valid),
        .frame_error(rx_ferr));

    typedef enum logic [2:0] {HUNT, LEN0, LEN1, PAYLOAD, CRC0, CRC1} rstate_t;
    rstate_t rs;
    logic [15:0] rcrc;
    logic [7:0] len_lo, crc_lo;
    logic [IB-1:0] acc;  // the word being received, its bytes shifted in from the top
    logic [BB-1:0] byte_idx;
    logic [WB-1:0] word_idx;
    logic [TB-1:0] idle;  // cycles since the last byte of a frame in progress
    logic full;  // the buffer holds a checked frame not yet all read into m_tdata
    logic set_full, clr_full;
    logic nak_req;
    logic [7:0] nak_why;
    logic [IN_WIDTH-1:0] mem [0:IN_WORDS-1];
    wire [IB-1:0] next_acc = (acc >> 8) | (IB'(rx_data) << (IB - 8));

    always_ff @(posedge clk) begin
        if (rx_valid && rs == PAYLOAD && !full && byte_idx == BB'(IN_BYTES - 1))
            mem[word_idx] <= next_acc[IN_WIDTH-1:0];
    end

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            rs <= HUNT;
            idle <= '0;
            set_full <= 1'b0;
            nak_req <= 1'b0;
            nak_why <= '0;
            byte_idx <= '0;
            word_idx <= '0;
        end else begin
            set_full <= 1'b0;
            nak_req <= 1'b0;
            if (rs == HUNT || rx_valid) idle <= '0;
            else idle <= idle + 1'b1;
            if (rs != HUNT && idle == TB'(TIMEOUT_CLKS)) begin
                rs <= HUNT;  // a frame that stopped: never wait for it forever
                nak_req <= 1'b1;
                nak_why <= R_TIMEOUT;
            end else if (rx_valid) begin
                if (rs == LEN0 || rs == LEN1 || rs == PAYLOAD) rcrc <= crc16(rcrc, rx_data);
                case (rs)
                    HUNT: if (rx_data == SYNC) begin
                        rs <= LEN0;
                        rcrc <= 16'hFFFF;
                    end
                    LEN0: begin
                        len_lo <= rx_data;
                        rs <= LEN1;
                    end
                    LEN1: if ({rx_data, len_lo} == 16'(IN_LEN)) begin
                        rs <= PAYLOAD;
                        byte_idx <= '0;
                        word_idx <= '0;
                    end else begin
                        // most likely a 0xA5 that was not a frame's start: hunt again
                        rs <= HUNT;
                        nak_req <= 1'b1;
                        nak_why <= R_LENGTH;
                    end
                    PAYLOAD: if (full) begin
                        rs <= HUNT;
                        nak_req <= 1'b1;
                        nak_why <= R_OVERRUN;
                    end else begin
                        acc <= next_acc;
                        if (byte_idx == BB'(IN_BYTES - 1)) begin
                            byte_idx <= '0;
                            word_idx <= word_idx + 1'b1;
                            if (word_idx == WB'(IN_WORDS - 1)) rs <= CRC0;
                        end else byte_idx <= byte_idx + 1'b1;
                    end
                    CRC0: begin
                        crc_lo <= rx_data;
                        rs <= CRC1;
                    end
                    CRC1: begin
                        rs <= HUNT;
                        if ({rx_data, crc_lo} == rcrc) set_full <= 1'b1;
                        else begin
                            nak_req <= 1'b1;
                            nak_why <= R_CRC;
                        end
                    end
                    default: rs <= HUNT;
                endcase
            end
        end
    end

    // ------------------------------------------------------------------ feed the accelerator
    logic [WB-1:0] rd_idx;
    wire load = full && (!m_tvalid || m_tready);
    assign clr_full = load && rd_idx == WB'(IN_WORDS - 1);
    always_ff @(posedge clk) begin
        if (load) m_tdata <= mem[rd_idx];  // m_tdata holds the last word: the buffer is free
    end
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            full <= 1'b0;
            m_tvalid <= 1'b0;
            rd_idx <= '0;
        end else begin
            if (set_full) full <= 1'b1;  // never together with clr_full: set only when empty
            else if (clr_full) full <= 1'b0;
            if (load) begin
                m_tvalid <= 1'b1;
                rd_idx <= clr_full ? '0 : rd_idx + 1'b1;
            end else if (m_tready) m_tvalid <= 1'b0;
        end
    end

    // ------------------------------------------------------------------ transmit
    typedef enum logic [3:0] {T_IDLE, T_SYNC, T_LEN0, T_LEN1, T_WORD, T_BYTES, T_CRC0, T_CRC1,
                              T_NAK0, T_NAK1} tstate_t;
    tstate_t ts;
    logic [15:0] tcrc;
    logic [OB-1:0] hold;
    logic hold_last;
    logic [OBB-1:0] obyte;
    logic nak_pending;
    logic [7:0] nak_pending_why, nak_send_why;
    logic [7:0] tx_byte;
    logic tx_valid, tx_ready;
    taper_uart_tx #(.CLKS_PER_BIT(CLKS_PER_BIT)) tx (
        .clk(clk), .rst_n(rst_n), .data(tx_byte), .valid(tx_valid), .ready(tx_ready),
        .tx(uart_tx));

    always_comb begin
        tx_valid = 1'b1;
        case (ts)
            T_SYNC: tx_byte = SYNC;
            T_LEN0: tx_byte = 8'(OUT_LEN);
            T_LEN1: tx_byte = 8'(OUT_LEN >> 8);
            T_BYTES: tx_byte = hold[7:0];
            T_CRC0: tx_byte = tcrc[7:0];
            T_CRC1: tx_byte = tcrc[15:8];
            T_NAK0: tx_byte = NAK;
            T_NAK1: tx_byte = nak_send_why;
            default: begin
                tx_byte = 8'h00;
                tx_valid = 1'b0;
            end
        endcase
    end
    wire sent = tx_valid && tx_ready;
    assign s_tready = (ts == T_WORD);

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            ts <= T_IDLE;
            nak_pending <= 1'b0;
            frame_done <= 1'b0;
            frame_nak <= 1'b0;
        end else begin
            frame_done <= 1'b0;
            frame_nak <= 1'b0;
            if (nak_req) begin  // at most one NAK waits: the latest reason wins
                nak_pending <= 1'b1;
                nak_pending_why <= nak_why;
            end
            if (sent && (ts == T_LEN0 || ts == T_LEN1 || ts == T_BYTES)) tcrc <= crc16(tcrc, tx_byte);
            case (ts)
                // a reply first: its words come from a frame accepted before
                T_IDLE: if (s_tvalid) ts <= T_SYNC;
                else if (nak_pending) begin
                    ts <= T_NAK0;
                    nak_send_why <= nak_pending_why;
                    if (!nak_req) nak_pending <= 1'b0;
                end
                T_SYNC: if (sent) begin
                    ts <= T_LEN0;
                    tcrc <= 16'hFFFF;
                end
                T_LEN0: if (sent) ts <= T_LEN1;
                T_LEN1: if (sent) ts <= T_WORD;
                T_WORD: if (s_tvalid) begin
                    hold <= OB'(s_tdata);
                    hold_last <= s_tlast;
                    obyte <= '0;
                    ts <= T_BYTES;
                end
                T_BYTES: if (sent) begin
                    hold <= hold >> 8;
                    obyte <= obyte + 1'b1;
                    if (obyte == OBB'(OUT_BYTES - 1)) ts <= hold_last ? T_CRC0 : T_WORD;
                end
                T_CRC0: if (sent) ts <= T_CRC1;
                T_CRC1: if (sent) begin
                    ts <= T_IDLE;
                    frame_done <= 1'b1;
                end
                T_NAK0: if (sent) ts <= T_NAK1;
                T_NAK1: if (sent) begin
                    ts <= T_IDLE;
                    frame_nak <= 1'b1;
                end
                default: ts <= T_IDLE;
            endcase
        end
    end
endmodule
