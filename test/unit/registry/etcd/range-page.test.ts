/**
 * `rangePage()` against a gRPC peer that is not etcd: a Range answer that is not a
 * RangeResponse, and one that never comes. Real etcd never sends the first; a broken proxy or a
 * wrong port can. Either way the call must fail with a typed etcd3 error that names the cause,
 * within the request deadline, and never resolve to a partial page.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createEtcdClient } from '../../../../src/registry/etcd/client.js'
import { etcd3 } from '../../../../src/registry/etcd/load.js'
import { parseEtcdOptions } from '../../../../src/registry/etcd/options.js'
import { etcd3Range, requireFromEtcd3 } from '../../../support/etcd3-stack.js'

interface GrpcServer {
  addService(service: object, implementation: object): void
  bindAsync(
    address: string,
    credentials: object,
    cb: (err: Error | null, port: number) => void,
  ): void
  forceShutdown(): void
}
interface GrpcModule {
  Server: new () => GrpcServer
  ServerCredentials: { createInsecure(): object }
}
// etcd3's own gRPC stack, so that the peer speaks exactly what etcd3's client expects.
const grpc = requireFromEtcd3('@grpc/grpc-js') as GrpcModule

let server: GrpcServer
let host: string
// What the peer does with the next Range call.
let answer: 'garbage' | 'never' = 'garbage'

beforeAll(async () => {
  server = new grpc.Server()
  server.addService(
    // The answer is sent as raw bytes: the peer can send what no protobuf encoder would.
    { Range: { ...etcd3Range, responseSerialize: (bytes: Buffer) => bytes } },
    {
      Range(_call: unknown, reply: (err: null, bytes: Buffer) => void) {
        // A header whose length says 50 bytes, followed by 2.
        if (answer === 'garbage') reply(null, Buffer.from([0x0a, 50, 0x18, 0x05]))
      },
    },
  )
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err !== null) reject(err)
      else resolve(p)
    })
  })
  host = `http://127.0.0.1:${String(port)}`
})

afterAll(() => {
  server.forceShutdown()
})

it('rejects an answer that is not a RangeResponse with a typed error naming why', async () => {
  answer = 'garbage'
  const client = createEtcdClient(parseEtcdOptions({ hosts: host }))
  try {
    const call = client.rangePage({
      key: Buffer.from('/s/'),
      rangeEnd: Buffer.from('/s0'),
      limit: 5,
    })
    await expect(call).rejects.toThrow(/not a valid RangeResponse: .* runs past its end/)
    await expect(call).rejects.toBeInstanceOf(etcd3().GRPCInternalError)
  } finally {
    client.close()
  }
})

it('gives up on an answer that never comes at requestTimeoutMs', async () => {
  answer = 'never'
  const client = createEtcdClient(parseEtcdOptions({ hosts: host, requestTimeoutMs: 300 }))
  try {
    const call = client.rangePage({
      key: Buffer.from('/s/'),
      rangeEnd: Buffer.from('/s0'),
      limit: 5,
    })
    await expect(call).rejects.toBeInstanceOf(etcd3().GRPCDeadlineExceededError)
  } finally {
    client.close()
  }
})
