import type { CheckInput } from '../../src/envoy/check-input';

/** Builds CheckRequests shaped the way Envoy sends them (camelCase, as proto-loader encodes). */
export interface RequestSpec {
  principal?: string;
  host?: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  /** `destination.principal`; default: the example mesh's workload for the host (see destinationFor), '' for none. */
  destination?: string;
}

/** The workloads of the example policies (policies/), by the first label of their hosts. */
const EXAMPLE_WORKLOADS: Record<string, string> = {
  customers: 'spiffe://shop.example/ns/customers/sa/customers',
  frontend: 'spiffe://shop.example/ns/frontend/sa/web',
  inventory: 'spiffe://shop.example/ns/inventory/sa/inventory',
  orders: 'spiffe://shop.example/ns/orders/sa/orders',
  payments: 'spiffe://shop.example/ns/payments/sa/payments',
};

/** What Envoy sends as destination.principal: the identity of the workload the host reaches; '' where none is known. */
export function destinationFor(host: string): string {
  const label = host.split(/[.:]/)[0]!.toLowerCase();
  return Object.hasOwn(EXAMPLE_WORKLOADS, label) ? EXAMPLE_WORKLOADS[label]! : '';
}

/**
 * A CheckInput, as the engine takes it, and a message a gRPC client can send. Fields Gatehouse
 * does not read (addresses, time, scheme) ride along as Envoy sends them, for the codec to skip.
 */
export function envoyCheckRequest(spec: RequestSpec = {}): CheckInput {
  const host = spec.host ?? 'orders.shop.svc.cluster.local:8080';
  const method = spec.method ?? 'POST';
  const path = spec.path ?? '/v1/orders';
  const destination = spec.destination ?? destinationFor(host);
  const request = {
    attributes: {
      source: {
        address: { socketAddress: { address: '10.0.3.7', portValue: 51234 } },
        ...(spec.principal !== undefined ? { principal: spec.principal } : {}),
      },
      destination: {
        address: { socketAddress: { address: '10.0.1.4', portValue: 8080 } },
        ...(destination !== '' ? { principal: destination } : {}),
      },
      request: {
        time: { seconds: '1763805600', nanos: 0 },
        http: {
          id: '8128512473459230741',
          method,
          path,
          host,
          scheme: 'https',
          protocol: 'HTTP/2',
          headers: {
            ':authority': host,
            ':method': method,
            ':path': path,
            ':scheme': 'https',
            // As clients send it: a content type on requests that carry a body.
            ...(method === 'POST' || method === 'PUT' || method === 'PATCH'
              ? { 'content-type': 'application/json' }
              : {}),
            'user-agent': 'checkout/1.4',
            'x-request-id': 'b2a7c3de-0f6a-4d0e-a1f4-5d2c7e9b8a10',
            'x-forwarded-proto': 'https',
            ...spec.headers,
          },
        },
      },
    },
  };
  return request;
}

export const CHECKOUT_WEB = 'spiffe://shop.example/ns/checkout/sa/web';
export const CHECKOUT_BATCH = 'spiffe://shop.example/ns/checkout/sa/batch';
export const FRONTEND_WEB = 'spiffe://shop.example/ns/frontend/sa/web';
export const ORDERS = 'spiffe://shop.example/ns/orders/sa/orders';
export const EXPORTER = 'spiffe://shop.example/ns/reports/sa/exporter';
