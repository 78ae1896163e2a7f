// Places orders at a constant arrival rate and holds the command path to its
// latency objectives. Settings: RATE (orders per second, default 100),
// DURATION (default 1m), VUS and MAX_VUS (virtual users kept ready, and the
// most k6 may start to keep the rate), and those of lib.js.
//
//   k6 run load/place_orders.js
//   k6 run -e RATE=300 -e DURATION=5m load/place_orders.js
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, addStock, idempotencyKey, orderBody, params } from './lib.js';

export const options = {
  scenarios: {
    place_orders: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 100),
      timeUnit: '1s',
      duration: __ENV.DURATION || '1m',
      preAllocatedVUs: Number(__ENV.VUS || 50),
      maxVUs: Number(__ENV.MAX_VUS || 200),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: ['p(95)<200', 'p(99)<500'],
    // Iterations k6 could not start for want of virtual users: the rate was not held.
    dropped_iterations: ['count<1'],
    checks: ['rate>0.99'],
  },
};

export function setup() {
  addStock();
}

export default function () {
  const res = http.post(`${BASE_URL}/v1/orders`, orderBody(), params('place order', { 'Idempotency-Key': idempotencyKey() }));
  check(res, {
    'order placed (201)': (r) => r.status === 201,
    'response has order_id and version': (r) => r.status === 201 && !!r.json('order_id') && r.json('version') >= 1,
  });
}
