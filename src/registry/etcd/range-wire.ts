/**
 * etcd's `KV.Range` call in protobuf wire format, for listings: the request written and the answer
 * read by us, reading only what a listing uses.
 *
 * Why not etcd3's decoder: it turns the answer into plain objects with protobufjs (`toObject`,
 * every int64 as a decimal string), four int64 fields per key, of which a listing reads one.
 * For 5,000 keys that took about a third of the whole Range call on a 2-vCPU machine
 * (docs/performance.md#large-services). Everything else (connections, authentication, retries,
 * deadlines, error mapping) stays etcd3's: see `WayfindEtcd3.rangePage` in client.ts.
 *
 * The messages (etcd `api/etcdserverpb/rpc.proto` and `api/mvccpb/kv.proto`):
 *
 *     RangeRequest  { bytes key = 1; bytes range_end = 2; int64 limit = 3; int64 revision = 4; … }
 *     RangeResponse { ResponseHeader header = 1; repeated KeyValue kvs = 2; bool more = 3; int64 count = 4; }
 *     ResponseHeader { uint64 cluster_id = 1; uint64 member_id = 2; int64 revision = 3; uint64 raft_term = 4; }
 *     KeyValue { bytes key = 1; int64 create_revision = 2; int64 mod_revision = 3; int64 version = 4;
 *                bytes value = 5; int64 lease = 6; }
 *
 * Wire format rules followed (protobuf.dev/programming-guides/encoding): fields may come in any
 * order and repeat (the last scalar wins), unknown fields are skipped by their wire type, an
 * absent field holds its default (0, empty, false), and an int64 is a varint of up to ten bytes
 * whose value is read as two's complement.
 */

/** What `KV.Range` is asked, as a listing asks it. */
export interface RangeRequest {
  readonly key: Uint8Array
  readonly rangeEnd: Uint8Array
  /** Keys per answer; 0 means no limit. */
  readonly limit: number
  /** The revision to read at; 0 (or absent) means the newest. */
  readonly revision?: bigint
}

/** One key of a listing. */
export interface ListedKv {
  readonly key: Buffer
  /** A view into the answer's buffer (as protobufjs gives it), not a copy. */
  readonly value: Buffer
  /** The lease ID as etcd3 writes it (signed decimal), "0" for a key without a lease. */
  readonly lease: string
}

/** One `KV.Range` answer, as much of it as a listing reads. */
export interface RangePage {
  /** `header.revision`: the store revision the answer was read at. */
  readonly revision: bigint
  readonly kvs: ListedKv[]
  /** More keys exist in the range beyond `limit`. */
  readonly more: boolean
}

/** The gRPC method path of `KV.Range`. */
export const RANGE_PATH = '/etcdserverpb.KV/Range'

/** An answer that is not a well-formed `RangeResponse`. */
export class RangeWireError extends Error {
  constructor(reason: string, offset: number) {
    super(`etcd's Range answer is not a valid RangeResponse: ${reason} at byte ${String(offset)}`)
    this.name = 'RangeWireError'
  }
}

const WIRE_VARINT = 0
const WIRE_FIXED64 = 1
const WIRE_BYTES = 2
const WIRE_FIXED32 = 5

/** Encodes a `RangeRequest` (only the fields a listing sets; zero values are left out). */
export function encodeRangeRequest(req: RangeRequest): Buffer {
  const chunks: Uint8Array[] = []
  const varint = (value: bigint): void => {
    const bytes: number[] = []
    let v = value
    while (v >= 0x80n) {
      bytes.push(Number(v & 0x7fn) | 0x80)
      v >>= 7n
    }
    bytes.push(Number(v))
    chunks.push(Uint8Array.from(bytes))
  }
  const bytesField = (field: number, bytes: Uint8Array): void => {
    if (bytes.length === 0) return
    varint(BigInt((field << 3) | WIRE_BYTES))
    varint(BigInt(bytes.length))
    chunks.push(bytes)
  }
  const intField = (field: number, value: bigint): void => {
    if (value === 0n) return
    varint(BigInt((field << 3) | WIRE_VARINT))
    // A negative int64 goes on the wire as its 64-bit two's complement (ten bytes).
    varint(BigInt.asUintN(64, value))
  }
  bytesField(1, req.key)
  bytesField(2, req.rangeEnd)
  intField(3, BigInt(req.limit))
  intField(4, req.revision ?? 0n)
  return Buffer.concat(chunks)
}

/**
 * Reads a `RangeResponse`. Throws {@link RangeWireError} on anything that is not one (truncated,
 * a group wire type, a varint over ten bytes): a listing then fails and is retried, like any
 * failed call, and nothing already known is replaced.
 */
export function decodeRangeResponse(buf: Buffer): RangePage {
  const r = new WireReader(buf)
  const kvs: ListedKv[] = []
  let revision = 0n
  let more = false
  const end = buf.length
  while (r.pos < end) {
    const tag = r.tag()
    const field = tag >>> 3
    const wire = tag & 7
    if (field === 1 && wire === WIRE_BYTES) {
      const stop = r.lengthEnd()
      revision = readHeaderRevision(r, stop, revision)
    } else if (field === 2 && wire === WIRE_BYTES) {
      const stop = r.lengthEnd()
      kvs.push(readKeyValue(r, stop))
    } else if (field === 3 && wire === WIRE_VARINT) {
      more = r.varint64() !== 0n
    } else {
      r.skip(wire, end)
    }
  }
  return { revision, kvs, more }
}

/** `ResponseHeader.revision`; every other header field is skipped. */
function readHeaderRevision(r: WireReader, stop: number, previous: bigint): bigint {
  let revision = previous
  while (r.pos < stop) {
    const tag = r.tag()
    if (tag === ((3 << 3) | WIRE_VARINT)) revision = BigInt.asIntN(64, r.varint64())
    else r.skip(tag & 7, stop)
  }
  r.expectAt(stop)
  return revision
}

const EMPTY: Buffer = Buffer.alloc(0)

function readKeyValue(r: WireReader, stop: number): ListedKv {
  let key = EMPTY
  let value = EMPTY
  let lease = '0'
  while (r.pos < stop) {
    const tag = r.tag()
    switch (tag) {
      case (1 << 3) | WIRE_BYTES:
        key = r.bytes(stop)
        break
      case (5 << 3) | WIRE_BYTES:
        value = r.bytes(stop)
        break
      case (6 << 3) | WIRE_VARINT:
        lease = r.int64Text()
        break
      default:
        r.skip(tag & 7, stop)
    }
  }
  r.expectAt(stop)
  return { key, value, lease }
}

/** A cursor over one answer. Every read checks its bounds: a short answer throws, never reads past. */
class WireReader {
  pos = 0

  constructor(private readonly buf: Buffer) {}

  /** A field tag: field number (up to 2^29 - 1) and wire type, a varint of at most 32 bits. */
  tag(): number {
    const at = this.pos
    const v = this.smallVarint(0xffffffff, 'a field tag')
    if (v === 0) throw new RangeWireError('a field tag of 0', at)
    return v
  }

  /** The end offset of a length-delimited field that starts here (its length read). */
  lengthEnd(limit = this.buf.length): number {
    const at = this.pos
    const len = this.smallVarint(0x7fffffff, 'a length')
    const stop = this.pos + len
    if (stop > limit)
      throw new RangeWireError(`a field of ${String(len)} bytes runs past its end`, at)
    return stop
  }

  bytes(limit: number): Buffer {
    const stop = this.lengthEnd(limit)
    const out = this.buf.subarray(this.pos, stop)
    this.pos = stop
    return out
  }

  /** A varint of at most `max` (tags, lengths): plain number arithmetic, five bytes at most. */
  private smallVarint(max: number, what: string): number {
    const buf = this.buf
    const at = this.pos
    let value = 0
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.pos >= buf.length) throw new RangeWireError('a varint cut short', at)
      const b = buf[this.pos++] as number
      value += (b & 0x7f) * 2 ** shift
      if (b < 0x80) {
        if (value > max) break
        return value
      }
    }
    throw new RangeWireError(`${what} over ${String(max)}`, at)
  }

  /**
   * A varint of up to ten bytes, as an unsigned 64-bit value: a number when it fits in seven
   * bytes (49 bits, exact in a double), a bigint only when it is longer.
   */
  varint(): number | bigint {
    const buf = this.buf
    const at = this.pos
    let low = 0
    for (let i = 0; i < 7; i++) {
      if (this.pos >= buf.length) throw new RangeWireError('a varint cut short', at)
      const b = buf[this.pos++] as number
      low += (b & 0x7f) * 2 ** (7 * i)
      if (b < 0x80) return low
    }
    let value = BigInt(low)
    for (let i = 7; i < 10; i++) {
      if (this.pos >= buf.length) throw new RangeWireError('a varint cut short', at)
      const b = buf[this.pos++] as number
      value |= BigInt(b & 0x7f) << BigInt(7 * i)
      if (b < 0x80) return BigInt.asUintN(64, value)
    }
    throw new RangeWireError('a varint over ten bytes', at)
  }

  /** A varint as an unsigned 64-bit bigint. */
  varint64(): bigint {
    const v = this.varint()
    return typeof v === 'bigint' ? v : BigInt(v)
  }

  /** An int64 as signed decimal text, the way etcd3 (protobufjs with `longs: String`) writes it. */
  int64Text(): string {
    const v = this.varint()
    // A seven-byte value is below 2^49: positive, and its text needs no BigInt.
    return typeof v === 'bigint' ? BigInt.asIntN(64, v).toString() : String(v)
  }

  /** Skips one field's value by its wire type; groups (3, 4) never occur in etcd's proto3 messages. */
  skip(wire: number, limit: number): void {
    const at = this.pos
    let stop: number
    switch (wire) {
      case WIRE_VARINT:
        this.varint()
        return
      case WIRE_FIXED64:
        stop = this.pos + 8
        break
      case WIRE_BYTES:
        stop = this.lengthEnd(limit)
        break
      case WIRE_FIXED32:
        stop = this.pos + 4
        break
      default:
        throw new RangeWireError(`wire type ${String(wire)}`, at)
    }
    if (stop > limit) throw new RangeWireError('a field runs past its end', at)
    this.pos = stop
  }

  /** A nested message must end exactly where its length said. */
  expectAt(stop: number): void {
    if (this.pos !== stop)
      throw new RangeWireError('a nested message overruns its length', this.pos)
  }
}
