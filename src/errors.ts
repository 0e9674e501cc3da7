/**
 * Typed errors. One base class, a few categories (libnetwork's: bad request, not found,
 * forbidden, conflict, unavailable). Messages keep libnetwork's wording where clients
 * match on it (shared/reference/cnm.md §1).
 *
 * @module
 */

/** Machine-readable error codes, stable across versions. */
export const ErrorCode = {
  InvalidArgument: "INVALID_ARGUMENT",
  NotFound: "NOT_FOUND",
  Forbidden: "FORBIDDEN",
  Conflict: "CONFLICT",
  Unavailable: "UNAVAILABLE",
  Driver: "DRIVER",
  Internal: "INTERNAL",
} as const;

/** One of {@link ErrorCode}'s values. */
export type ErrorCodeValue = typeof ErrorCode[keyof typeof ErrorCode];

/** Base class of every error cnm throws on purpose. */
export class CnmError extends Error {
  /** Stable, machine-readable category. */
  readonly code: ErrorCodeValue;
  constructor(code: ErrorCodeValue, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = "CnmError";
  }
}

/** Bad input: a field is missing, empty, of the wrong type or unknown. Nothing was changed. */
export class InvalidArgumentError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.InvalidArgument, message, options);
    this.name = "InvalidArgumentError";
  }
}

/** The named network, endpoint, sandbox or driver does not exist. */
export class NotFoundError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.NotFound, message, options);
    this.name = "NotFoundError";
  }
}

/** The operation breaks one of CNM's invariants (libnetwork's "forbidden"). */
export class ForbiddenError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.Forbidden, message, options);
    this.name = "ForbiddenError";
  }
}

/** Something with the same identity already exists, or another writer got there first. */
export class ConflictError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.Conflict, message, options);
    this.name = "ConflictError";
  }
}

/** A dependency (NATS/JetStream, a pool) cannot serve the request now. */
export class UnavailableError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.Unavailable, message, options);
    this.name = "UnavailableError";
  }
}

/** A driver's side effect failed; the message is the driver's. */
export class DriverError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.Driver, message, options);
    this.name = "DriverError";
  }
}

/** Serialisable form of an error, as recorded in `*.failed` events. */
export interface ErrorRecord {
  name: string;
  code: string;
  message: string;
}

/** Turns anything thrown into an {@link ErrorRecord} for the journal. */
export function toErrorRecord(err: unknown): ErrorRecord {
  if (err instanceof CnmError) return { name: err.name, code: err.code, message: err.message };
  if (err instanceof Error) {
    return { name: err.name, code: ErrorCode.Internal, message: err.message };
  }
  return { name: "Error", code: ErrorCode.Internal, message: String(err) };
}

const byName: Record<string, new (message: string) => CnmError> = {
  InvalidArgumentError,
  NotFoundError,
  ForbiddenError,
  ConflictError,
  UnavailableError,
  DriverError,
};

/** Rebuilds a typed error from its {@link ErrorRecord} (e.g. one read from an event). */
export function fromErrorRecord(record: ErrorRecord): CnmError {
  const Ctor = byName[record.name];
  if (Ctor) return new Ctor(record.message);
  const err = new CnmError(ErrorCode.Internal, record.message);
  err.name = record.name;
  return err;
}

/** Message of anything thrown. */
export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
