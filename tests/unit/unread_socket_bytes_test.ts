import assert from "node:assert/strict";
import { unreadInTcpTable } from "../helpers/process_stats.ts";

// Rows as Linux writes them: a listener with a connection waiting to be accepted (inode 1257), a
// connection with 0x1A2B bytes unread (5001), one with nothing unread (5002), one the peer has
// closed with 0x400 bytes unread (5004, CLOSE_WAIT) and an IPv6 one (5003).
const TCP_TABLE =
  `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 1257 1 0000000027836874 100 0 0 10 0
   1: 0100007F:9227 0100007F:CF56 01 00000000:00001A2B 00:00000000 00000000     0        0 5001 1 00000000166cd1f0 20 4 30 10 -1
   2: 0100007F:9228 0100007F:CF57 01 00000200:00000000 00:00000000 00000000     0        0 5002 1 00000000166cd1f1 20 4 30 10 -1
   3: 0100007F:9F21 0100007F:A3B6 08 00000000:00000400 00:00000000 00000000     0        0 5004 1 00000000b59ee0d5 20 4 30 10 -1
`;
const TCP6_TABLE =
  `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:A8E3 0000000000000000FFFF00000100007F:D2F0 01 00000000:00000100 00:00000000 00000000     0        0 5003 1 0000000000000000 20 4 30 10 -1
`;

Deno.test("unread bytes are the receive queue of a connection, not its send queue", () => {
  assert.deepEqual(unreadInTcpTable(TCP_TABLE, [new Set(["5002"])]), [0]);
  assert.deepEqual(unreadInTcpTable(TCP_TABLE, [new Set(["5001"])]), [0x1a2b]);
});

Deno.test("unread bytes add up over the connections of each socket set", () => {
  assert.deepEqual(unreadInTcpTable(TCP_TABLE, [new Set(["5001", "5002"]), new Set(["5004"])]), [
    0x1a2b,
    0x400,
  ]);
});

Deno.test("a connection the peer has closed still counts what is left unread", () => {
  assert.deepEqual(unreadInTcpTable(TCP_TABLE, [new Set(["5004"])]), [0x400]);
});

Deno.test("a listener's queue of connections to accept is not unread data", () => {
  assert.deepEqual(unreadInTcpTable(TCP_TABLE, [new Set(["1257"])]), [0]);
});

Deno.test("unread bytes leave out sockets of other processes", () => {
  assert.deepEqual(unreadInTcpTable(TCP_TABLE, [new Set(["5002"]), new Set()]), [0, 0]);
});

Deno.test("unread bytes read IPv6 rows alike", () => {
  assert.deepEqual(unreadInTcpTable(TCP6_TABLE, [new Set(["5003"])]), [0x100]);
});
