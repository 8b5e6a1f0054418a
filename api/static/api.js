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

/** A path with the API key as `access_token`, for what a browser fetches without our headers:
 *  EventSource (it cannot send any) and download links. */
export function withKey(path) {
  const key = apiKey();
  if (!key) return path;
  return `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(key)}`;
}

/** An EventSource on an API path, carrying the key in its address; `onGone` runs if the browser gives up
 *  on it (after a dropped connection it reconnects by itself, and that is no reason to tell anyone). */
export function openEventStream(path, onGone = () => {}) {
  const source = new EventSource(withKey(path));
  source.addEventListener("error", () => source.readyState === EventSource.CLOSED && onGone());
  return source;
}

/** What a view says when its live updates have stopped for good. */
export const STREAM_GONE = "Live updates stopped: the event stream is not available.";
