// Every call to the API goes through request(): the one place that adds the API key once /v1 requires one.
const KEY_STORAGE = "trainyard.api-key";

/** Take `?key=` or `#key=` from the address into sessionStorage, and out of the address bar. */
export function captureApiKey() {
  const url = new URL(window.location.href);
  const fromHash = url.hash.startsWith("#key=") ? new URLSearchParams(url.hash.slice(1)).get("key") : null;
  const key = url.searchParams.get("key") || fromHash;
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  url.searchParams.delete("key");
  if (fromHash) url.hash = "";
  history.replaceState(null, "", url);
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

/** JSON in, JSON out; a non-2xx answer throws ApiError carrying FastAPI's `detail`. */
export async function request(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const isJson = (response.headers.get("content-type") || "").includes("json");
  const data = isJson ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, data?.detail ?? response.statusText);
  return data;
}

/** An EventSource on an API path. Browsers' EventSource cannot send headers: when /v1 requires a key,
 *  this is where it goes instead (a query parameter the events endpoint accepts). */
export function openEventStream(path) {
  return new EventSource(path);
}
