/**
 * etcd change → `change` event latency, next to the floor: a raw etcd3 prefix watcher on the
 * same puts, in the same process and the same run (docs/design/etcd.md#watch-latency-floor).
 *
 * A writer process (its own etcd3 client) puts the instance's registration with a new `meta.seq`
 * and the wall-clock stamp; wayfind sees an `updated` instance, the raw watcher a 'put'.
 */
import { Etcd3 } from 'etcd3'
import { createWayfind, etcd, type Wayfind } from '../src/index.js'
import { HelperProcess } from './lib/child.js'
import { startEtcd } from './lib/etcd.js'
import {
  latencyLoop,
  observer,
  roundRatio,
  soloRounds,
  type Contender,
  onSeqChange,
} from './lib/latency.js'
import {
  check,
  ms,
  note,
  printTable,
  writeResults,
  x,
  type BenchOptions,
  type BenchOutcome,
} from './lib/report.js'
import { summarize } from './lib/stats.js'
import { cdfSvg } from './lib/svg.js'

const SERVICE = 'bench-latency'
const PREFIX = `/services/${SERVICE}/`

export async function run({ quick }: BenchOptions): Promise<BenchOutcome> {
  const server = await startEtcd()
  let writer: HelperProcess | undefined
  const raw = new Etcd3({ hosts: server.host })
  const wf = createWayfind({ registry: etcd({ hosts: [server.host] }) })
  try {
    writer = (
      await HelperProcess.start(new URL('./lib/etcd-writer.ts', import.meta.url).pathname, [
        server.host,
      ])
    ).helper
    const w = writer
    const { see, run: loop } = latencyLoop()
    const obsWayfind = observer('wayfind change event')
    const obsRaw = observer('raw etcd3 watcher')

    // Both watchers exist before the first put; both are warmed up by the warm-up puts.
    const watcher = await raw.watch().prefix(PREFIX).create()
    watcher.on('error', () => undefined)
    watcher.on('put', (kv) => {
      const seq = seqOf(kv.value.toString('utf8'))
      if (seq !== undefined) see(obsRaw, seq)
    })
    onSeqChange(wf, (seq) => {
      see(obsWayfind, seq)
    })
    // The registry change both methods time (seq 0 seeds it): the writer process puts instance "a" with `seq`.
    const putA = async (seq: number): Promise<{ ts: number; ackMs: number }> => {
      const r = await w.request({
        type: 'put',
        key: `${PREFIX}a`,
        service: SERVICE,
        instanceId: 'a',
        port: 9000,
        seq,
      })
      return { ts: r.ts as number, ackMs: r.ackMs as number }
    }
    await putA(0)
    await wf.resolve(SERVICE, { timeoutMs: 10_000 })

    const rounds = quick ? 2 : 5
    const perRound = quick ? 50 : 400
    const result = await loop({
      observers: [obsWayfind, obsRaw],
      change: putA,
      warmup: quick ? 20 : 200,
      rounds,
      perRound,
      deadlineMs: 5_000,
    })
    await watcher.cancel()

    // Second method: interleaved solo rounds, each watcher alone with fresh clients, so that
    // neither waits behind the other in this process's event loop.
    const solo = await soloRounds({
      contenders: [wayfindContender(server.host), rawContender(server.host)],
      change: putA,
      warmup: quick ? 10 : 50,
      cycles: quick ? 2 : 7,
      perRound: quick ? 30 : 150,
      deadlineMs: 5_000,
    })
    const soloW = summarize(solo.samples['wayfind change event'] ?? [])
    const soloR = summarize(solo.samples['raw etcd3 watcher'] ?? [])
    const s50 = roundRatio(solo, 'wayfind change event', 'raw etcd3 watcher', 'p50')
    const s90 = roundRatio(solo, 'wayfind change event', 'raw etcd3 watcher', 'p90')
    const s99 = roundRatio(solo, 'wayfind change event', 'raw etcd3 watcher', 'p99')

    const sW = summarize(result.samples[obsWayfind.label] ?? [])
    const sR = summarize(result.samples[obsRaw.label] ?? [])
    const sA = summarize(result.ackMs)
    const p50 = roundRatio(result, obsWayfind.label, obsRaw.label, 'p50')
    const p90 = roundRatio(result, obsWayfind.label, obsRaw.label, 'p90')
    const p99 = roundRatio(result, obsWayfind.label, obsRaw.label, 'p99')
    printTable(
      `etcd put → event latency (${sW.count} puts, ${rounds} rounds, writer in another process)`,
      ['observer', 'p50', 'p90', 'p99', 'max'],
      [
        [obsWayfind.label, ms(sW.p50), ms(sW.p90), ms(sW.p99), ms(sW.max)],
        [obsRaw.label, ms(sR.p50), ms(sR.p90), ms(sR.p99), ms(sR.max)],
        ['put RPC ack (writer)', ms(sA.p50), ms(sA.p90), ms(sA.p99), ms(sA.max)],
        ['ratio wayfind / raw (median of rounds)', x(p50), x(p90), x(p99), '-'],
      ],
    )
    printTable(
      `etcd put → event latency, interleaved solo rounds (${soloW.count} puts each)`,
      ['observer', 'p50', 'p90', 'p99', 'max'],
      [
        [
          'wayfind change event (alone)',
          ms(soloW.p50),
          ms(soloW.p90),
          ms(soloW.p99),
          ms(soloW.max),
        ],
        ['raw etcd3 watcher (alone)', ms(soloR.p50), ms(soloR.p90), ms(soloR.p99), ms(soloR.max)],
        ['ratio wayfind / raw (median of rounds)', x(s50), x(s90), x(s99), '-'],
      ],
    )
    if (result.missed > 0) note(`  ${result.missed} puts were not seen by every watcher within 5 s`)
    writeResults(
      'latency-etcd',
      {
        samePuts: {
          summaries: { wayfind: sW, raw: sR, putAck: sA },
          ratios: { p50, p90, p99 },
          rounds: result.rounds,
          missed: result.missed,
          samples: result.samples,
        },
        soloRounds: {
          summaries: { wayfind: soloW, raw: soloR },
          ratios: { p50: s50, p90: s90, p99: s99 },
          rounds: solo.rounds,
          missed: solo.missed,
        },
      },
      {
        'latency-etcd.svg': cdfSvg('etcd: put → event latency (CDF)', 'ms after the put was sent', [
          { label: obsWayfind.label, samples: result.samples[obsWayfind.label] ?? [] },
          { label: obsRaw.label, samples: result.samples[obsRaw.label] ?? [] },
        ]),
      },
    )
    return {
      name: 'latency-etcd',
      checks: [
        check('etcd change→event p50 vs raw watcher (same puts)', p50, '<=', 1.1),
        check('etcd change→event p99 vs raw watcher (same puts)', p99, '<=', 1.25),
        check('etcd change→event p50 vs raw watcher (solo rounds)', s50, '<=', 1.1),
        check('etcd change→event p99 vs raw watcher (solo rounds)', s99, '<=', 1.25),
        check('etcd changes missed', result.missed + solo.missed, '<=', 0, ''),
      ],
    }
  } finally {
    await wf.close()
    raw.close()
    await writer?.stop()
    await server.remove()
  }
}

function wayfindContender(host: string): Contender {
  let wf: Wayfind | undefined
  return {
    label: 'wayfind change event',
    async start(see) {
      wf = createWayfind({ registry: etcd({ hosts: [host] }) })
      onSeqChange(wf, see)
      await wf.resolve(SERVICE, { timeoutMs: 10_000 })
    },
    async stop() {
      await wf?.close()
    },
  }
}

function rawContender(host: string): Contender {
  let client: Etcd3 | undefined
  return {
    label: 'raw etcd3 watcher',
    async start(see) {
      client = new Etcd3({ hosts: host })
      const watcher = await client.watch().prefix(PREFIX).create()
      watcher.on('error', () => undefined)
      watcher.on('put', (kv) => {
        const seq = seqOf(kv.value.toString('utf8'))
        if (seq !== undefined) see(seq)
      })
    },
    stop() {
      client?.close()
      return Promise.resolve()
    },
  }
}

function seqOf(value: string): number | undefined {
  try {
    const v = JSON.parse(value) as { meta?: { seq?: string } }
    const seq = Number(v.meta?.seq)
    return Number.isInteger(seq) ? seq : undefined
  } catch {
    return undefined
  }
}
