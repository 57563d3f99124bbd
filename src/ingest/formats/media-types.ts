/** Which body format a request's Content-Type selects. */
import { refuse } from '../../model/constraints.ts';
import type { BodyFormat } from '../../model/constraints.ts';

export const MEDIA_TYPES: Readonly<Record<string, BodyFormat>> = {
  'application/json': 'json',
  'application/x-ndjson': 'ndjson',
  'application/ndjson': 'ndjson',
  'text/csv': 'csv',
  'application/vnd.apache.arrow.stream': 'arrow',
};

export const ACCEPTED_MEDIA_TYPES = Object.keys(MEDIA_TYPES);

/** The format of a body sent with this Content-Type header; 415 listing the accepted types otherwise. */
export function bodyFormatOf(contentType: string | null): BodyFormat {
  const [essence = '', ...parameters] = (contentType ?? '').split(';');
  const type = essence.trim().toLowerCase();
  const format = Object.hasOwn(MEDIA_TYPES, type) ? MEDIA_TYPES[type] : undefined;
  if (!format) {
    throw refuse(
      'media_type',
      `send the batch as ${ACCEPTED_MEDIA_TYPES.join(', ')} (got "${type || 'no content type'}")`,
      { accepted: ACCEPTED_MEDIA_TYPES },
    );
  }
  if (format === 'ndjson' || format === 'csv') {
    for (const parameter of parameters) {
      const [name, value = ''] = parameter.split('=');
      const charset = value.trim().replace(/^"|"$/g, '').toLowerCase();
      if (name?.trim().toLowerCase() === 'charset' && charset !== 'utf-8' && charset !== 'utf8' && charset !== 'us-ascii') {
        throw refuse('media_type', `${type} bodies must be UTF-8 (got charset=${charset})`, { accepted: ACCEPTED_MEDIA_TYPES });
      }
    }
  }
  return format;
}
