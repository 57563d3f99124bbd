/**
 * Where InfluxDB clients put the API token: `Authorization: Token <token>` (v2 and v3 clients,
 * Telegraf), `Authorization: Bearer <token>`, v1's Basic authentication or `?u=…&p=…` query
 * parameters with the token as the password (the user name is not used).
 */
import { type BearerToken, isTokenSecret } from '../model/api-tokens.ts';

export function influxToken(request: Request): BearerToken {
  const authorization = request.headers.get('authorization');
  if (authorization) {
    const scheme = /^(token|bearer)\s+(\S+)\s*$/i.exec(authorization);
    if (scheme) return secretOf(scheme[2] as string);
    const basic = /^basic\s+(\S+)\s*$/i.exec(authorization);
    if (basic) {
      const decoded = Buffer.from(basic[1] as string, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      return colon < 0 ? { problem: 'malformed' } : secretOf(decoded.slice(colon + 1));
    }
    return { problem: 'malformed' };
  }
  const password = new URL(request.url).searchParams.get('p');
  return password ? secretOf(password) : { problem: 'missing' };
}

function secretOf(value: string): BearerToken {
  return isTokenSecret(value) ? { secret: value } : { problem: 'malformed' };
}
