/**
 * Which URLs the server may POST webhooks to. A `/start` caller chooses `webhook_url`, so without
 * this check it could make the server probe the network it runs in (cloud metadata, admin ports
 * on private addresses). The URL is checked when it is given, and the addresses its host resolves
 * to are checked again before every delivery, since DNS can change between the two.
 *
 * @module
 */

/** What a target may be. */
export interface TargetPolicy {
  /** `ENV=local`: plain http and loopback addresses are allowed (a receiver on this machine). */
  local: boolean;
  /** `WEBHOOK_ALLOW_PRIVATE=true`: private, link-local and metadata addresses are allowed. */
  allowPrivate: boolean;
}

/** The policy the configuration sets: `ENV=local` and `WEBHOOK_ALLOW_PRIVATE`. */
export function targetPolicyFor(
  config: { ENV: "local" | "production"; WEBHOOK_ALLOW_PRIVATE: boolean },
): TargetPolicy {
  return { local: config.ENV === "local", allowPrivate: config.WEBHOOK_ALLOW_PRIVATE };
}

/** Host names that always mean this machine or a cloud metadata service. */
const LOOPBACK_NAMES =
  /^(localhost|localhost\.localdomain|ip6-localhost|ip6-loopback)$|\.localhost$/;
const METADATA_NAMES = new Set(["metadata.google.internal", "metadata", "instance-data"]);

/** The kind of address a literal IP is, as far as a webhook target goes. */
export type AddressKind = "public" | "loopback" | "private" | "metadata";

/**
 * Classifies an IPv4 or IPv6 literal (no brackets). Anything not routable on the public internet
 * (private, CGNAT, link-local, unique-local, unspecified, multicast, documentation, reserved)
 * is "private"; the cloud metadata addresses are "metadata"; an unparsable string is "private"
 * so it can never pass as public.
 */
export function classifyAddress(ip: string): AddressKind {
  const v4 = parseIpv4(ip);
  if (v4) return classifyIpv4(v4);
  const v6 = parseIpv6(ip);
  if (!v6) return "private";
  return classifyIpv6(v6);
}

function classifyIpv4([a, b, c, d]: number[]): AddressKind {
  if (a === 169 && b === 254 && c === 169 && d === 254) return "metadata";
  if (a === 100 && b === 100 && c === 100 && d === 200) return "metadata"; // Alibaba Cloud
  if (a === 127) return "loopback";
  if (
    a === 0 || // "this network", includes the unspecified 0.0.0.0
    a === 10 ||
    (a === 100 && b >= 64 && b <= 127) || // carrier-grade NAT
    (a === 169 && b === 254) || // link-local
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 0 && (c === 0 || c === 2)) || // IETF protocol assignments, TEST-NET-1
    (a === 192 && b === 168) ||
    (a === 198 && (b === 18 || b === 19)) || // benchmarking
    (a === 198 && b === 51 && c === 100) || // TEST-NET-2
    (a === 203 && b === 0 && c === 113) || // TEST-NET-3
    a >= 224 // multicast, reserved, broadcast
  ) {
    return "private";
  }
  return "public";
}

function classifyIpv6(h: number[]): AddressKind {
  const zeroUpTo = (n: number) => h.slice(0, n).every((x) => x === 0);
  if (zeroUpTo(7) && h[7] === 1) return "loopback";
  if (zeroUpTo(8)) return "private"; // unspecified
  // Addresses that carry an IPv4 address: judge by the IPv4 one.
  const embedded = () => [h[6] >> 8, h[6] & 0xff, h[7] >> 8, h[7] & 0xff];
  if (zeroUpTo(5) && h[5] === 0xffff) return classifyIpv4(embedded()); // IPv4-mapped
  if (zeroUpTo(6)) return classifyIpv4(embedded()); // IPv4-compatible (deprecated)
  if (h[0] === 0x64 && h[1] === 0xff9b && h.slice(2, 6).every((x) => x === 0)) {
    return classifyIpv4(embedded()); // NAT64
  }
  if (h[0] === 0x2002) return classifyIpv4([h[1] >> 8, h[1] & 0xff, h[2] >> 8, h[2] & 0xff]); // 6to4
  if (h[0] === 0xfd00 && h[1] === 0x0ec2 && h.slice(2, 7).every((x) => x === 0) && h[7] === 0x254) {
    return "metadata"; // AWS instance metadata over IPv6
  }
  if (
    (h[0] & 0xfe00) === 0xfc00 || // unique-local fc00::/7
    (h[0] & 0xffc0) === 0xfe80 || // link-local
    (h[0] & 0xffc0) === 0xfec0 || // site-local (deprecated)
    (h[0] & 0xff00) === 0xff00 || // multicast
    (h[0] === 0x2001 && h[1] === 0x0db8) || // documentation
    (h[0] === 0x0100 && h.slice(1, 4).every((x) => x === 0)) // discard-only
  ) {
    return "private";
  }
  return "public";
}

/** Dotted-quad IPv4 (the URL parser has already normalised hex and short forms). */
function parseIpv4(text: string): number[] | undefined {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!match) return undefined;
  const parts = match.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? parts : undefined;
}

/** Eight 16-bit groups, or undefined. Accepts `::` and a trailing dotted IPv4; no zone ids. */
function parseIpv6(text: string): number[] | undefined {
  let s = text.toLowerCase();
  const tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const q = parseIpv4(v4[1]);
    if (!q) return undefined;
    tail.push((q[0] << 8) | q[1], (q[2] << 8) | q[3]);
    s = s.slice(0, -v4[1].length);
    if (s.endsWith(":") && !s.endsWith("::")) s = s.slice(0, -1);
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string) => part === "" ? [] : part.split(":");
  const head = groups(halves[0]);
  const rest = halves.length === 2 ? groups(halves[1]) : [];
  const hex = [...head, ...rest];
  if (!hex.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  const given = hex.length + tail.length;
  if (halves.length === 1 ? given !== 8 : given > 7) return undefined;
  const fill = new Array(8 - given).fill(0);
  return [
    ...head.map((g) => parseInt(g, 16)),
    ...(halves.length === 2 ? fill : []),
    ...rest.map((g) => parseInt(g, 16)),
    ...tail,
  ];
}

/** A URL's host without IPv6 brackets or a trailing dot. */
function bareHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, "").replace(/\.$/, "").toLowerCase();
}

function isIpLiteral(host: string): boolean {
  return parseIpv4(host) !== undefined || parseIpv6(host) !== undefined;
}

/** Why an address of `kind` is refused under `policy`, or undefined when it is allowed. */
function addressProblem(kind: AddressKind, what: string, policy: TargetPolicy): string | undefined {
  if (kind === "public" || policy.allowPrivate) return undefined;
  if (kind === "loopback" && policy.local) return undefined;
  const label = kind === "metadata"
    ? "a cloud metadata address"
    : kind === "loopback"
    ? "a loopback address (allowed only with ENV=local)"
    : "a private, link-local or reserved address";
  return `${what} is ${label}; webhooks go only to public addresses. Use a public https URL, ` +
    "or set WEBHOOK_ALLOW_PRIVATE=true if the receiver is on your own network.";
}

/**
 * Checks a webhook URL as written, without DNS: scheme, credentials, and the host when it is a
 * literal IP or a well-known local name. Returns the problem and its fix, or undefined.
 */
export function webhookUrlProblem(raw: string, policy: TargetPolicy): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `${JSON.stringify(raw)} is not a URL; give an absolute https URL, e.g. ` +
      '"https://example.com/hooks/calls".';
  }
  if (url.username || url.password) {
    return "the URL must not carry a user name or password; receivers authenticate webhooks " +
      "by their Webhook-Signature header.";
  }
  const host = bareHost(url);
  const loopbackHost = LOOPBACK_NAMES.test(host) || (isIpLiteral(host) &&
    classifyAddress(host) === "loopback");
  if (url.protocol === "http:") {
    if (!(policy.local && loopbackHost)) {
      return "the URL must use https (plain http is allowed only to a loopback address with " +
        "ENV=local).";
    }
  } else if (url.protocol !== "https:") {
    return `the URL's scheme is ${url.protocol.slice(0, -1)}; use https.`;
  }
  if (METADATA_NAMES.has(host)) return addressProblem("metadata", `host ${host}`, policy);
  if (LOOPBACK_NAMES.test(host)) return addressProblem("loopback", `host ${host}`, policy);
  if (isIpLiteral(host)) return addressProblem(classifyAddress(host), `address ${host}`, policy);
  return undefined;
}

/** Looks up a host's addresses; `Deno.resolveDns` in production, a table in tests. */
export type Resolver = (host: string, type: "A" | "AAAA") => Promise<string[]>;

/** The system resolver; a record type the host does not have resolves to no addresses. */
export const systemResolver: Resolver = async (host, type) => {
  try {
    return await Deno.resolveDns(host, type);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
};

/** Why a delivery may not go ahead; `permanent` problems are not retried. */
export interface DeliveryProblem {
  message: string;
  permanent: boolean;
}

/**
 * Checks a URL just before a delivery: the static rules, then every address its host resolves
 * to (A and AAAA), so a name pointed at a private address after `/start` is refused too. A
 * refused address is permanent; a failed lookup is not (DNS recovers).
 */
export async function deliveryTargetProblem(
  raw: string,
  policy: TargetPolicy,
  resolve: Resolver,
): Promise<DeliveryProblem | undefined> {
  const problem = webhookUrlProblem(raw, policy);
  if (problem) return { message: problem, permanent: true };
  if (policy.allowPrivate) return undefined;
  const host = bareHost(new URL(raw));
  // Literals and local names were judged above; nothing to resolve.
  if (isIpLiteral(host) || LOOPBACK_NAMES.test(host)) return undefined;
  let addresses: string[];
  try {
    const [a, aaaa] = await Promise.all([resolve(host, "A"), resolve(host, "AAAA")]);
    addresses = [...a, ...aaaa];
  } catch (error) {
    return { message: `cannot resolve ${host}: ${(error as Error).message}`, permanent: false };
  }
  if (addresses.length === 0) {
    return { message: `${host} has no A or AAAA record`, permanent: false };
  }
  for (const address of addresses) {
    const refused = addressProblem(
      classifyAddress(address),
      `${host} resolves to ${address}, which`,
      policy,
    );
    if (refused) return { message: refused, permanent: true };
  }
  return undefined;
}
