package org.casesync;

/**
 * What a Casesync handle tells the app. Every method has an empty default, so
 * a Kotlin or Java caller overrides only what it shows. Calls come on the
 * thread that caused them (the one in sync(), or the one that edited), with
 * no lock of the library held: hand work to the UI thread from here. An
 * exception thrown here is printed and dropped; it never reaches the library.
 */
public interface CasesyncListener {
    /** How a record of the local view changed. */
    enum Change { LOCAL, PULLED, REMOVED, WIPED }

    /** A record changed (recordId null for WIPED: every record is gone). */
    default void onChange(String recordId, Change what) {}

    /**
     * A pushed change met a concurrent one that needs a person (status
     * "conflict"): the server value stands; result is the server's result with
     * the conflict ids, as JSON.
     */
    default void onConflict(String recordId, String resultJson) {}

    /**
     * A pushed change was rejected (schema, lifecycle, role, scope): it is kept
     * as a notice (Casesync.notices()) and in the server's quarantine.
     */
    default void onRejection(String recordId, String resultJson) {}

    /** Every event of a sync, raw: kind as CASESYNC_EVENT_* of casesync.h. */
    default void onEvent(int kind, String recordId, String status, String json) {}
}
