package org.casesync;

import java.util.Objects;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * libcasesync on the JVM (and on Android, with the same native code): a local
 * store of case records, offline edits checked with the server's schema, and
 * sync with a casesync server. JSON comes and goes as text; parse it with the
 * app's own JSON library.
 *
 * <p>Caveats: one handle per state directory per process (an LMDB rule); a
 * handle may be used from several threads (network calls are serialised);
 * close() it when done (try-with-resources, or Kotlin's use {}); calls after
 * close() throw.
 *
 * <pre>{@code
 * try (Casesync cs = Casesync.open(new Casesync.Options(stateDir))) {
 *     cs.addListener(new CasesyncListener() {
 *         public void onChange(String id, Change what) { refresh(id); }
 *     });
 *     cs.login("https://cases.example.gov", "li.wei", password, "phone-1");
 *     String id = cs.create("unlicensed_vending", fieldsJson, null);
 *     cs.sync();
 * }
 * }</pre>
 */
public final class Casesync implements AutoCloseable {
    static {
        System.loadLibrary("casesync_jni");
    }

    /** Sync flags (casesync.h). */
    public static final int SYNC_NO_PUSH = 1, SYNC_NO_PULL = 2, SYNC_NO_UPLOAD = 4;
    /** Event kinds (casesync.h). */
    public static final int EVENT_RESULT = 1, EVENT_FAILED = 2, EVENT_RECORD = 3, EVENT_REMOVED = 4,
            EVENT_WIPED = 5, EVENT_UPLOAD = 6, EVENT_NOTICE = 7;

    /** Options of open(); only the state directory is required. */
    public static final class Options {
        final String stateDir;
        String deviceName, appVersion;
        boolean noSync;

        public Options(String stateDir) { this.stateDir = Objects.requireNonNull(stateDir); }

        /** Sent at login. */
        public Options deviceName(String v) { deviceName = v; return this; }

        /** Sent at login and as User-Agent. */
        public Options appVersion(String v) { appVersion = v; return this; }

        /** Skip the fsync after each edit (tests, simulators). */
        public Options noSync(boolean v) { noSync = v; return this; }
    }

    private long handle;
    private final CopyOnWriteArrayList<CasesyncListener> listeners = new CopyOnWriteArrayList<>();

    private Casesync() {}

    /** Opens (creating when needed) the state directory. */
    public static Casesync open(Options o) throws CasesyncException {
        Casesync c = new Casesync();
        c.handle = c.nativeOpen(o.stateDir, o.deviceName, o.appVersion, o.noSync);
        return c;
    }

    public void addListener(CasesyncListener l) { listeners.add(Objects.requireNonNull(l)); }

    public void removeListener(CasesyncListener l) { listeners.remove(l); }

    /** Logs in at serverUrl ("https://host", without /v1) and fetches the schema. */
    public void login(String serverUrl, String username, String password, String deviceId) throws CasesyncException {
        nativeLogin(live(), serverUrl, username, password, deviceId);
    }

    /** A new record, offline; its id (recordId, or a new ULID when null). */
    public String create(String type, String fieldsJson, String recordId) throws CasesyncException {
        return nativeCreate(live(), type, fieldsJson, recordId);
    }

    /** Sets fields and/or appends list items (JSON objects; either may be null). */
    public void update(String recordId, String setJson, String appendJson) throws CasesyncException {
        nativeUpdate(live(), recordId, setJson, appendJson);
    }

    /** Appends a note; its item id. */
    public String note(String recordId, String text) throws CasesyncException {
        return nativeNote(live(), recordId, text);
    }

    /** Moves the record along its procedure's lifecycle. */
    public void transition(String recordId, String to) throws CasesyncException {
        nativeTransition(live(), recordId, to);
    }

    /** The local view of a record as JSON, or null when the phone does not hold it. */
    public String get(String recordId) throws CasesyncException { return nativeRead(live(), 0, recordId); }

    /** Every record of the local view, a JSON array in id order. */
    public String list() throws CasesyncException { return nativeRead(live(), 1, null); }

    /** Conflicts, rejections and refused changesets kept for the user, a JSON array. */
    public String notices() throws CasesyncException { return nativeRead(live(), 2, null); }

    /** The session (user, device, server) as JSON. */
    public String session() throws CasesyncException { return nativeRead(live(), 3, null); }

    /** Push, pull and upload; what it did as JSON (applied, conflicts, upserts ...). */
    public String sync() throws CasesyncException { return nativeSync(live(), 0); }

    public String sync(int flags) throws CasesyncException { return nativeSync(live(), flags); }

    /** Downloads an evidence blob to path, resuming a cut-off earlier download. */
    public void download(String sha256, String path) throws CasesyncException {
        nativeDownload(live(), sha256, path);
    }

    /** Any API call with the session's token; "STATUS BODY". */
    public String request(String method, String path, String bodyJson) throws CasesyncException {
        return nativeRequest(live(), method, path, bodyJson);
    }

    @Override
    public synchronized void close() {
        long h = handle;
        handle = 0;
        if (h != 0) nativeClose(h);
    }

    private synchronized long live() throws CasesyncException {
        if (handle == 0) throw new CasesyncException(-1, 0, null, null, "the Casesync handle is closed");
        return handle;
    }

    /* Called by casesync_jni.c. */
    private void dispatchEvent(int kind, String recordId, String status, String json) {
        for (CasesyncListener l : listeners) {
            l.onEvent(kind, recordId, status, json);
            if (kind == EVENT_RESULT && "conflict".equals(status)) l.onConflict(recordId, json);
            if (kind == EVENT_RESULT && "rejected".equals(status)) l.onRejection(recordId, json);
        }
    }

    private void dispatchChange(String recordId, int what) {
        CasesyncListener.Change c = what == 1 ? CasesyncListener.Change.LOCAL
                : what == 2 ? CasesyncListener.Change.PULLED
                : what == 3 ? CasesyncListener.Change.REMOVED : CasesyncListener.Change.WIPED;
        for (CasesyncListener l : listeners) l.onChange(recordId, c);
    }

    private native long nativeOpen(String stateDir, String deviceName, String appVersion, boolean noSync)
            throws CasesyncException;
    private native void nativeClose(long h);
    private native void nativeLogin(long h, String server, String user, String pass, String device)
            throws CasesyncException;
    private native String nativeCreate(long h, String type, String fields, String recordId) throws CasesyncException;
    private native void nativeUpdate(long h, String recordId, String set, String append) throws CasesyncException;
    private native String nativeNote(long h, String recordId, String text) throws CasesyncException;
    private native void nativeTransition(long h, String recordId, String to) throws CasesyncException;
    private native String nativeRead(long h, int what, String recordId) throws CasesyncException;
    private native String nativeSync(long h, int flags) throws CasesyncException;
    private native void nativeDownload(long h, String sha256, String path) throws CasesyncException;
    private native String nativeRequest(long h, String method, String path, String body) throws CasesyncException;
}
