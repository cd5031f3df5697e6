/** Builds CheckRequests shaped the way Envoy sends them (camelCase, as proto-loader encodes). */
export interface RequestSpec {
  principal?: string;
  host?: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
}

export function envoyCheckRequest(spec: RequestSpec = {}): Record<string, unknown> {
  const host = spec.host ?? 'orders.shop.svc.cluster.local:8080';
  const method = spec.method ?? 'POST';
  const path = spec.path ?? '/v1/orders';
  return {
    attributes: {
      source: {
        address: { socketAddress: { address: '10.0.3.7', portValue: 51234 } },
        ...(spec.principal !== undefined ? { principal: spec.principal } : {}),
      },
      destination: {
        address: { socketAddress: { address: '10.0.1.4', portValue: 8080 } },
        principal: 'spiffe://shop.example/ns/orders/sa/orders',
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
            ...(method === 'POST' || method === 'PUT' || method === 'PATCH' ? { 'content-type': 'application/json' } : {}),
            'user-agent': 'checkout/1.4',
            'x-request-id': 'b2a7c3de-0f6a-4d0e-a1f4-5d2c7e9b8a10',
            'x-forwarded-proto': 'https',
            ...spec.headers,
          },
        },
      },
    },
  };
}

export const CHECKOUT_WEB = 'spiffe://shop.example/ns/checkout/sa/web';
export const CHECKOUT_BATCH = 'spiffe://shop.example/ns/checkout/sa/batch';
export const FRONTEND_WEB = 'spiffe://shop.example/ns/frontend/sa/web';
export const ORDERS = 'spiffe://shop.example/ns/orders/sa/orders';
