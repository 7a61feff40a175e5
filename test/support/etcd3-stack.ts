/**
 * etcd3's own gRPC stack, for tests that hold wayfind's etcd code to it: modules resolved from
 * etcd3's package (the copies etcd3 itself runs on), and the `KV.Range` method definition loaded
 * from etcd3's rpc.proto with the settings etcd3 loads it with (lib/connection-pool.js).
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

/** `KV.Range` as @grpc/proto-loader defines it: path, stream flags and (de)serializers. */
export interface RangeMethod {
  readonly path: string
  readonly requestStream: boolean
  readonly responseStream: boolean
  requestSerialize(value: object): Buffer
  requestDeserialize(bytes: Buffer): Record<string, unknown>
  responseSerialize(value: object): Buffer
  responseDeserialize(bytes: Buffer): {
    header: { revision: string }
    kvs: { key: Buffer; value: Buffer; lease: string }[]
    more: boolean
  }
}

const etcd3Main = createRequire(import.meta.url).resolve('etcd3')

/** `require()` as etcd3's own files resolve it. */
export const requireFromEtcd3 = createRequire(etcd3Main)

const protoLoader = requireFromEtcd3('@grpc/proto-loader') as {
  loadSync(file: string, options: object): Record<string, Record<string, RangeMethod>>
}

/** etcd3's encoder and decoder for `KV.Range`. */
export const etcd3Range = protoLoader.loadSync(
  join(dirname(etcd3Main), '..', 'proto', 'rpc.proto'),
  { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
)['etcdserverpb.KV']?.Range as RangeMethod
