/**
 * The seeded chaos convergence suite on etcd, short seed (CI). The long run and replays:
 * `npm run chaos -- --registry etcd --seed N --ops M` (see docs/testing.md).
 */
import { it } from 'vitest'
import { formatReport, runChaos } from './driver.js'
import { expectConverged } from './expect-converged.js'
import { etcdTarget } from './etcd-target.js'

it('etcd: every watched cache converges to the registry through SIGKILL, cuts and compaction', async () => {
  const report = await runChaos(await etcdTarget(), { seed: 1, ops: 160 })
  process.stdout.write(formatReport(report))
  expectConverged(report, ['sigkill', 'cut', 'compact'])
})
