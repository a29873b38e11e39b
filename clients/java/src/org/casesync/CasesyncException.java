package org.casesync;

/**
 * A failure of libcasesync: its return code (the CASESYNC_E_* values of
 * casesync.h), the HTTP status when a server answered (else 0), the server's
 * or the schema's snake_case code ("validation_failed", "changeset_gap" ...),
 * and the field at fault, when there is one.
 */
public class CasesyncException extends Exception {
    private static final long serialVersionUID = 1L;
    private final int code;
    private final long httpStatus;
    private final String apiCode;
    private final String field;

    public CasesyncException(int code, long httpStatus, String apiCode, String field, String message) {
        super(message);
        this.code = code;
        this.httpStatus = httpStatus;
        this.apiCode = apiCode;
        this.field = field;
    }

    /** The library's return code (negative). */
    public int getCode() { return code; }

    /** The HTTP status when a server answered, else 0. */
    public long getHttpStatus() { return httpStatus; }

    /** The server's or the schema's code, or null. */
    public String getApiCode() { return apiCode; }

    /** The JSON path of the field at fault, or null. */
    public String getField() { return field; }
}
