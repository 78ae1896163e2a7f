// A read/write mix at a constant arrival rate: of every 20 iterations about
// 4 place an order, 6 read one of this user's orders back, 5 list the
// customer's orders, 3 read a SKU's stock and 2 read the sales report.
// Settings: RATE (iterations per second, default 200), DURATION (default
// 1m), VUS, MAX_VUS, and those of lib.js.
//
//   k6 run load/mixed.js
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, CUSTOMER_ID, SKUS, addStock, adminParams, idempotencyKey, orderBody, params, pick, today } from './lib.js';

export const options = {
  scenarios: {
    mixed: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 200),
      timeUnit: '1s',
      duration: __ENV.DURATION || '1m',
      preAllocatedVUs: Number(__ENV.VUS || 50),
      maxVUs: Number(__ENV.MAX_VUS || 300),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: ['p(95)<200', 'p(99)<500'],
    'http_req_duration{name:place order}': ['p(95)<200'],
    'http_req_duration{name:get order}': ['p(95)<200'],
    'http_req_duration{name:list orders}': ['p(95)<200'],
    'http_req_duration{name:get stock}': ['p(95)<200'],
    'http_req_duration{name:sales report}': ['p(95)<200'],
    checks: ['rate>0.99'],
  },
};

// The orders this virtual user placed (id and the version placing returned),
// newest last, so reads ask for orders that exist.
const placed = [];

export function setup() {
  addStock();
}

function place() {
  const res = http.post(`${BASE_URL}/v1/orders`, orderBody(), params('place order', { 'Idempotency-Key': idempotencyKey() }));
  const ok = check(res, { 'order placed (201)': (r) => r.status === 201 });
  if (ok) {
    placed.push({ id: res.json('order_id'), version: res.json('version') });
    if (placed.length > 100) {
      placed.shift();
    }
  }
}

function getOrder() {
  if (placed.length === 0) {
    place();
    return;
  }
  const order = pick(placed);
  // min_version: read this user's own write even if the view lags a little.
  const res = http.get(`${BASE_URL}/v1/orders/${order.id}?min_version=${order.version}`, params('get order'));
  check(res, { 'order read (200)': (r) => r.status === 200 && r.json('order_id') === order.id });
}

function listOrders() {
  const res = http.get(`${BASE_URL}/v1/orders?customer_id=${encodeURIComponent(CUSTOMER_ID)}&limit=20`, params('list orders'));
  check(res, { 'orders listed (200)': (r) => r.status === 200 && Array.isArray(r.json('orders')) });
}

function getInventory() {
  const res = http.get(`${BASE_URL}/v1/inventory/${encodeURIComponent(pick(SKUS))}`, params('get stock'));
  check(res, { 'stock read (200)': (r) => r.status === 200 });
}

function salesStats() {
  const res = http.get(`${BASE_URL}/v1/stats/sales?from=${today(7)}&to=${today()}`, adminParams('sales report'));
  check(res, { 'sales read (200)': (r) => r.status === 200 && r.json('totals') !== undefined });
}

export default function () {
  const n = Math.random() * 20;
  if (n < 4) {
    place();
  } else if (n < 10) {
    getOrder();
  } else if (n < 15) {
    listOrders();
  } else if (n < 18) {
    getInventory();
  } else {
    salesStats();
  }
}
