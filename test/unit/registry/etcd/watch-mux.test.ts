/**
 * The etcd watch multiplexer's state machine (src/registry/etcd/watch-mux.ts), driven through a
 * scripted Watch stream that answers as etcd's Watch RPC does (one `created` per create request,
 * in order; then responses by watch_id; `canceled` with `compact_revision` or a reason). The
 * integration tests (test/integration/etcd/multiplex.test.ts) cover routing, leaving and resuming
 * after a dropped connection against a real etcd; these pin the edges a real server cannot be
 * made to hit on demand.
 */
import { EventEmitter } from 'node:events'
import type { IEvent, IWatchRequest, IWatchResponse } from 'etcd3'
import { describe, expect, it } from 'vitest'
import type { WayfindEtcd3 } from '../../../../src/registry/etcd/client.js'
import {
  WatchMux,
  type StreamCallbacks,
  type StreamEnd,
} from '../../../../src/registry/etcd/watch-mux.js'
import { withDeadline } from '../../../support/wait.js'

/** The client end of one Watch stream: records what wayfind writes, lets the test answer. */
class ScriptedStream extends EventEmitter {
  readonly writes: IWatchRequest[] = []
  ended = false
  cancelled = false

  write(req: IWatchRequest): boolean {
    this.writes.push(req)
    this.emit('wrote')
    return true
  }

  end(): void {
    this.ended = true
  }

  cancel(): void {
    this.cancelled = true
  }

  get creates(): string[] {
    return this.writes.flatMap((w) =>
      w.create_request === undefined ? [] : [String(w.create_request.start_revision)],
    )
  }

  get cancels(): string[] {
    return this.writes.flatMap((w) =>
      w.cancel_request === undefined ? [] : [String(w.cancel_request.watch_id)],
    )
  }

  /** Resolves once `count` requests were written. */
  async written(count: number): Promise<void> {
    while (this.writes.length < count)
      await withDeadline(
        new Promise<void>((resolve) => this.once('wrote', resolve)),
        5_000,
        `write #${count}`,
      )
  }

  answer(res: Partial<IWatchResponse>): void {
    this.emit('data', {
      header: { revision: '100' },
      created: false,
      canceled: false,
      watch_id: '0',
      events: [],
      compact_revision: '0',
      cancel_reason: '',
      ...res,
    })
  }
}

function setup(): {
  mux: WatchMux
  streams: ScriptedStream[]
  stream: (n: number) => Promise<ScriptedStream>
} {
  const streams: ScriptedStream[] = []
  const opened = new EventEmitter()
  const client = {
    leaderWatchClient: {
      watch: () => {
        const s = new ScriptedStream()
        streams.push(s)
        opened.emit('open')
        return Promise.resolve(s)
      },
    },
  } as unknown as WayfindEtcd3
  return {
    mux: new WatchMux(client),
    streams,
    stream: async (n) => {
      while (streams[n] === undefined)
        await withDeadline(
          new Promise<void>((resolve) => opened.once('open', resolve)),
          5_000,
          `stream #${n}`,
        )
      return streams[n]
    },
  }
}

const range = (service: string): { key: Buffer; end: Buffer } => ({
  key: Buffer.from(`/services/${service}/`),
  end: Buffer.from(`/services/${service}0`),
})

function callbacks(
  opts: {
    created?: (rev: bigint) => string | undefined
    events?: (e: readonly IEvent[]) => void
  } = {},
): StreamCallbacks {
  return {
    created: opts.created ?? (() => undefined),
    events: opts.events ?? (() => undefined),
  }
}

describe('etcd WatchMux', () => {
  it('a stream failure resumes every watcher, pending creates included, and the next watch opens a new stream', async () => {
    const { mux, stream } = setup()
    const a = mux.watch(range('a'), 11n, new AbortController().signal, callbacks())
    const b = mux.watch(range('b'), 22n, new AbortController().signal, callbacks())
    const s0 = await stream(0)
    await s0.written(2)
    expect(s0.creates).toEqual(['11', '22'])
    s0.answer({ created: true, watch_id: '1' }) // a is created; b's create is still pending
    const boom = new Error('connection reset')
    s0.emit('error', boom)
    const [endA, endB] = await withDeadline(Promise.all([a, b]), 5_000, 'both watchers to end')
    expect(endA.kind).toBe('resume')
    expect(endB.kind).toBe('resume')
    expect(s0.ended && s0.cancelled).toBe(true)
    // Each caller resumes from its own revision: the mux sends what it is given, on a new stream.
    const a2 = mux.watch(range('a'), 15n, new AbortController().signal, callbacks())
    const s1 = await stream(1)
    await s1.written(1)
    expect(s1.creates).toEqual(['15'])
    s1.emit('end')
    expect((await a2).kind).toBe('resume')
  })

  it('a cancel from etcd re-lists only that watcher; the stream and the others stay', async () => {
    const { mux, stream } = setup()
    const seen: number[] = []
    const a = mux.watch(range('a'), 1n, new AbortController().signal, callbacks())
    const b = mux.watch(
      range('b'),
      1n,
      new AbortController().signal,
      callbacks({ events: (e) => seen.push(e.length) }),
    )
    const s = await stream(0)
    await s.written(2)
    s.answer({ created: true, watch_id: '1' })
    s.answer({ created: true, watch_id: '2' })
    s.answer({ watch_id: '1', canceled: true, compact_revision: '50' })
    const endA: StreamEnd = await a
    expect(endA).toEqual({ kind: 'relist', why: 'compacted at 50' })
    // etcd already dropped it: no cancel request is sent for it.
    expect(s.cancels).toEqual([])
    expect(s.ended).toBe(false)
    s.answer({ watch_id: '2', events: [{} as IEvent] })
    expect(seen).toEqual([1])
    void b
  })

  it('unwatching while the create is pending: resolves at once, and cancels the id etcd then assigns', async () => {
    const { mux, stream } = setup()
    const stay = mux.watch(range('stay'), 1n, new AbortController().signal, callbacks())
    const ac = new AbortController()
    const created: bigint[] = []
    const leaving = mux.watch(
      range('leave'),
      1n,
      ac.signal,
      callbacks({ created: (r) => (created.push(r), undefined) }),
    )
    const s = await stream(0)
    await s.written(2)
    s.answer({ created: true, watch_id: '1' })
    ac.abort()
    expect(await leaving).toEqual({ kind: 'aborted' })
    expect(s.ended).toBe(false) // 'stay' still uses the stream
    s.answer({
      created: true,
      watch_id: '2',
      header: { revision: '120' } as IWatchResponse['header'],
    })
    expect(s.cancels).toEqual(['2'])
    expect(created).toEqual([]) // the departed watcher never hears of it
    void stay
  })

  it('the last watcher leaving with its create pending closes the stream; the late answer is ignored', async () => {
    const { mux, stream } = setup()
    const ac = new AbortController()
    const w = mux.watch(range('a'), 1n, ac.signal, callbacks())
    const s = await stream(0)
    await s.written(1)
    ac.abort()
    expect(await w).toEqual({ kind: 'aborted' })
    expect(s.ended && s.cancelled).toBe(true)
    s.answer({ created: true, watch_id: '1' })
    expect(s.cancels).toEqual([])
  })

  it('a refused create re-lists that watcher, and the next created still goes to the next create', async () => {
    const { mux, stream } = setup()
    const createdB: bigint[] = []
    const a = mux.watch(range('a'), 1n, new AbortController().signal, callbacks())
    void mux.watch(
      range('b'),
      1n,
      new AbortController().signal,
      callbacks({ created: (r) => (createdB.push(r), undefined) }),
    )
    const s = await stream(0)
    await s.written(2)
    s.answer({
      created: true,
      canceled: true,
      watch_id: '-1',
      cancel_reason: 'etcdserver: permission denied',
    })
    expect(await a).toEqual({
      kind: 'relist',
      why: 'canceled by etcd: etcdserver: permission denied',
    })
    s.answer({
      created: true,
      watch_id: '7',
      header: { revision: '130' } as IWatchResponse['header'],
    })
    expect(createdB).toEqual([130n])
  })

  it('created() asking to re-list ends that watcher (delayed) and cancels it on etcd', async () => {
    const { mux, stream } = setup()
    const w = mux.watch(
      range('a'),
      1n,
      new AbortController().signal,
      callbacks({ created: () => 'revision went back' }),
    )
    const s = await stream(0)
    await s.written(1)
    s.answer({ created: true, watch_id: '3' })
    expect(await w).toEqual({ kind: 'relist', why: 'revision went back', delay: true })
    expect(s.cancels).toEqual(['3'])
  })

  it('a throwing events handler resumes only its own watcher', async () => {
    const { mux, stream } = setup()
    const bug = new Error('handler bug')
    const a = mux.watch(
      range('a'),
      1n,
      new AbortController().signal,
      callbacks({
        events: () => {
          throw bug
        },
      }),
    )
    const seenB: number[] = []
    void mux.watch(
      range('b'),
      1n,
      new AbortController().signal,
      callbacks({ events: (e) => seenB.push(e.length) }),
    )
    const s = await stream(0)
    await s.written(2)
    s.answer({ created: true, watch_id: '1' })
    s.answer({ created: true, watch_id: '2' })
    s.answer({ watch_id: '1', events: [{} as IEvent] })
    expect(await a).toEqual({ kind: 'resume', error: bug })
    expect(s.cancels).toEqual(['1'])
    s.answer({ watch_id: '2', events: [{} as IEvent, {} as IEvent] })
    expect(seenB).toEqual([2])
  })
})
