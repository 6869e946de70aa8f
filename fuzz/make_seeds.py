#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/{ipc,message}/ from the unit tests' inputs
(tests/unit/ipc_test.cpp, message_test.cpp) and the cluster's wire messages
(src/detail/cluster_wire.hpp). Run it again after changing it; libFuzzer's own
finds go to build-fuzz/corpus/, not here."""
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# message_test.cpp: what parse() must accept, and what it must refuse.
TEXTS = [
    b'{"zebra":1,"apple":{"y":2,"b":3}}',
    b'{"a":1,"b":[true,null,"x"]}',
    b'{"name":"snowman \\u2603 \\ud83d\\ude00","corners":[{"x":-1,"y":2147483647}],"tags":{"pi":3.141592653589793}}',
    b'"line one\\nline two\\r\\u2028end"',
    b'{"a":1,"b":2,"a":3}',
    b'[100000000000000000000,-0.5,18446744073709551615,-9223372036854775808]',
    b'{"s":"\\u00e9\\ud83d\\ude00\\u2028","n":null,"t":true,"e":[],"o":{}}',
    b'[-0.0,1e308,5e-324,0.1,123456789012345678]',
    b'"\\ud800"', b'[1,]', b'{"a":1', b'"\xff"', b'{} trailing', b'{"a":}', b'nul', b'"unterminated',
    b'\0{"a":1}\0garbage', b'{"a":1}\0garbage', b'\xef\xbb\xbf{"a":1}',
    b'[' * 1001 + b']' * 1001, b'"' + b'[' * 50 + b'\\""',
    # IPC lines: Node's internal messages and the cluster's.
    b'{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"what":"a pipe"}}',
    b'{"cmd":"NODE_HANDLE_ACK"}', b'{"cmd":"NODE_HANDLE_NACK"}',
    b'{"cmd":"NODE_CLUSTER","act":"queryServer","seq":1,"address":"127.0.0.1","port":0}',
    b'{"cmd":"NODE_CLUSTER","act":"newconn","key":"127.0.0.1:8080","seq":7}',
]

# ipc_fuzz.cpp's script format.
def config(on_message=0, internal=True, message_limit=0, early_limit=0, owner_closes=False):
    return bytes([on_message | (4 if internal else 0) | message_limit << 3 | early_limit << 5 |
                  (0x80 if owner_closes else 0)])

def write(data, fd=False, piece=256):
    """Writes `data` in pieces of at most `piece` bytes (op 1), the first with a descriptor."""
    out = b''
    for i in range(0, len(data), piece):
        chunk = data[i:i + piece]
        out += bytes([1 | (8 if fd and i == 0 else 0), len(chunk) - 1]) + chunk
    return out

TURN = b'\x02'
def send(size=0, fd=False): return bytes([3, size | (0x40 if fd else 0)])
LISTEN = b'\x04'
def internal(on): return bytes([5 | (8 if on else 0)])
def close(): return b'\x0e'
def disconnect(): return b'\x06'
HANG_UP = b'\x07'
GONE = b'\x0f'  # the peer stops reading too: the channel's writes fail

handle = b'{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"what":"a pipe"}}\n'
newconn = b'{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","act":"newconn","key":"127.0.0.1:0","seq":1}}\n'
ack = b'{"cmd":"NODE_HANDLE_ACK"}\n'
nack = b'{"cmd":"NODE_HANDLE_NACK"}\n'
cluster = (b'{"cmd":"NODE_CLUSTER","act":"online"}\n'
           b'{"cmd":"NODE_CLUSTER","act":"queryServer","seq":1,"address":"127.0.0.1","port":0}\n'
           b'{"cmd":"NODE_CLUSTER","act":"accepted","ack":1,"accepted":true}\n'
           b'{"cmd":"NODE_CLUSTER","act":"crew:figures","requests":12}\n')

SCRIPTS = [
    # ipc_test: messages arrive whole and in order; malformed lines; a line over the limit.
    config() + write(b'{"n":1}\n"two"\n[3,"\\u2028","\\ud83d\\ude00"]\n', piece=5),
    config() + write(b'not json\n{"ok":1}\n{"bad utf8":"\xff"}\n[1,\n"split ') + TURN + write(b'across writes"\n'),
    config(message_limit=1) + write(b'1\n"' + b'x' * 300 + b'"\n2\n', piece=100),
    # Descriptors: a handle, a handle before anyone listens, one nobody claims.
    config() + write(handle, fd=True, piece=20) + write(b'"after the handle"\n'),
    config(on_message=1) + write(handle, fd=True) + write(b'1\n2\n') + TURN + LISTEN + TURN,
    config(on_message=2) + write(handle, fd=True) + write(handle, fd=True) + write(b'"x"\n', fd=True),
    config(on_message=2, early_limit=2) + write(b'"0123456789"\n' * 8) + write(handle, fd=True),
    # The channel sends handles; the peer answers ACK, NACKs, or too many NACKs.
    config() + send(4, fd=True) + send(1) + TURN + write(ack) + TURN,
    config() + send(4, fd=True) + TURN + write(nack) + TURN + write(nack * 3) + TURN + write(nack) + TURN,
    config() + send(0, fd=True) + send(2, fd=True) + disconnect() + TURN + write(ack) + TURN + write(ack),
    config(owner_closes=True) + send(0, fd=True) + send(1) + send(2, fd=True),
    # The cluster's control messages, with and without a handler for them.
    config() + write(cluster, piece=33) + write(newconn, fd=True) + TURN,
    config(internal=False) + write(newconn, fd=True) + TURN + internal(True) + write(cluster),
    # Re-entry from a message callback, and ends in every order.
    config() + write(b'"send"\n') + TURN + write(ack) + write(b'"disconnect"\n') + TURN,
    config() + write(b'"close"\n"after close"\n') + TURN,
    config() + send(3) + HANG_UP + TURN + send(3),
    config() + write(b'{"partial":') + HANG_UP + TURN,
    config() + send(5) + close() + send(5),
    # cluster_primary's use-after-free: a send that meets EPIPE, with handles queued.
    config() + GONE + send(1, fd=True) + send(2) + send(3, fd=True) + TURN,
    config(owner_closes=True) + send(0, fd=True) + TURN + GONE + write(ack) + send(1) + TURN,
]

def store(kind, items):
    folder = os.path.join(HERE, 'corpus', kind)
    os.makedirs(folder, exist_ok=True)
    for item in items:
        with open(os.path.join(folder, hashlib.sha1(item).hexdigest()), 'wb') as f:
            f.write(item)

store('message', TEXTS)
store('ipc', SCRIPTS)
