// Places orders and follows each one until the saga has settled it
// (confirmed, rejected or cancelled), measuring how long confirmation takes
// end to end: command, relay, Kafka, saga, payment provider, projection.
// Settings: RATE (orders per second, default 20), DURATION (default 1m),
// SAGA_TIMEOUT (seconds to wait for a settled order, default 35: the order
// deadline is 30s), POLL_INTERVAL (seconds between reads, default 0.1), VUS,
// MAX_VUS, and those of lib.js.
//
//   k6 run load/saga.js
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { BASE_URL, TERMINAL, addStock, idempotencyKey, orderBody, params } from './lib.js';

const timeout = Number(__ENV.SAGA_TIMEOUT || 35) * 1000;
const pollInterval = Number(__ENV.POLL_INTERVAL || 0.1);

// From sending the order to reading it back confirmed, in milliseconds.
const timeToConfirmed = new Trend('time_to_confirmed', true);
// Share of the settled orders that were confirmed (stock and payment are
// plentiful by default, so anything else is worth a look).
const confirmed = new Rate('orders_confirmed');
// Orders still pending after SAGA_TIMEOUT.
const unsettled = new Counter('orders_unsettled');

export const options = {
  scenarios: {
    saga: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 20),
      timeUnit: '1s',
      duration: __ENV.DURATION || '1m',
      preAllocatedVUs: Number(__ENV.VUS || 50),
      maxVUs: Number(__ENV.MAX_VUS || 500),
    },
  },
  thresholds: {
    time_to_confirmed: ['p(95)<1000', 'p(99)<2000'],
    orders_confirmed: ['rate>0.99'],
    orders_unsettled: ['count<1'],
    http_req_failed: ['rate<0.01'],
    'http_req_duration{name:place order}': ['p(95)<200', 'p(99)<500'],
  },
};

export function setup() {
  addStock();
}

// A read may wait for the view (min_version) and answer 412 when it is still
// behind at the server's bound: that is an answer to poll again, not a failure.
const pollParams = params('get order', {}, { responseCallback: http.expectedStatuses(200, 412) });

export default function () {
  const start = Date.now();
  const res = http.post(`${BASE_URL}/v1/orders`, orderBody(), params('place order', { 'Idempotency-Key': idempotencyKey() }));
  if (!check(res, { 'order placed (201)': (r) => r.status === 201 })) {
    return;
  }
  const id = res.json('order_id');
  const version = res.json('version');

  while (Date.now() - start < timeout) {
    const got = http.get(`${BASE_URL}/v1/orders/${id}?min_version=${version}`, pollParams);
    if (got.status === 200) {
      const status = got.json('status');
      if (TERMINAL.includes(status)) {
        confirmed.add(status === 'confirmed');
        if (status === 'confirmed') {
          timeToConfirmed.add(Date.now() - start);
        }
        return;
      }
    } else if (got.status !== 412) {
      check(got, { 'order read (200)': (r) => r.status === 200 });
      return;
    }
    sleep(pollInterval);
  }
  unsettled.add(1);
}
