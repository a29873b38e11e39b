package org.casesync;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Two phones in one JVM against a real casesyncd (started by
 * tests/test_java.c, which passes the server, two state folders, the users'
 * passwords, a grid and a time): they converge, the change listener sees
 * local and pulled changes, and the concurrent edit of a manual field
 * reaches the second phone's listener as a conflict. Plain Java, no test
 * framework: exit 0 and "OK" when every check holds.
 */
public final class TwoPhonesTest {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static String member(String json, String name) {
        Matcher m = Pattern.compile("\"" + Pattern.quote(name) + "\":(\"(?:[^\"\\\\]|\\\\.)*\"|-?[0-9.]+|true|false|null)")
                .matcher(json == null ? "" : json);
        return m.find() ? m.group(1) : null;
    }

    static final class Seen implements CasesyncListener {
        final List<String> changes = Collections.synchronizedList(new ArrayList<>());
        final List<String> conflicts = Collections.synchronizedList(new ArrayList<>());
        final List<String> rejections = Collections.synchronizedList(new ArrayList<>());

        @Override public void onChange(String id, Change what) { changes.add(what + ":" + id); }
        @Override public void onConflict(String id, String json) { conflicts.add(id); }
        @Override public void onRejection(String id, String json) { rejections.add(id); }
    }

    public static void main(String[] args) throws Exception {
        String server = args[0], dirA = args[1], dirB = args[2], passA = args[3], passB = args[4], grid = args[5],
                at = args[6];
        String fields = "{\"procedure\":\"general\",\"source\":\"patrol\",\"description\":\"vendor on the bridge\","
                + "\"occurred_at\":\"" + at + "\",\"grid\":\"" + grid + "\",\"address\":\"1 Qianmen St\","
                + "\"location\":{\"lon\":116.39,\"lat\":39.9,\"crs\":\"wgs84\"},\"fine_amount\":100}";
        Seen sa = new Seen(), sb = new Seen();
        Casesync closed;
        // docs/clients.md: begin
        try (Casesync a = Casesync.open(new Casesync.Options(dirA).noSync(true).appVersion("java-test/1"));
             Casesync b = Casesync.open(new Casesync.Options(dirB).noSync(true))) {
            closed = a;
            a.addListener(sa);
            b.addListener(sb);
            a.login(server, "off1", passA, "dev-JA");
            b.login(server, "off2", passB, "dev-JB");

            String id = a.create("unlicensed_vending", fields, null);
            // docs/clients.md: end
            check(sa.changes.contains("LOCAL:" + id), "no LOCAL change for the create: " + sa.changes);
            a.sync();
            b.sync();
            check(b.get(id) != null, "phone B did not pull the case");
            check(sb.changes.contains("PULLED:" + id), "no PULLED change on B: " + sb.changes);

            /* Both edit offline: different lww fields, the same manual field. */
            a.update(id, "{\"description\":\"A: two carts\",\"fine_amount\":150}", null);
            b.update(id, "{\"address\":\"B: east gate\",\"fine_amount\":180}", null);
            a.sync();
            String rep = b.sync();
            check("1".equals(member(rep, "conflicts")), "B's sync reported no conflict: " + rep);
            check(sb.conflicts.size() == 1 && sb.conflicts.get(0).equals(id), "B's listener got no conflict: " + sb.conflicts);
            check(sa.conflicts.isEmpty(), "A got a conflict: " + sa.conflicts);
            a.sync();

            String va = a.get(id), vb = b.get(id);
            for (String f : new String[] {"version", "fine_amount", "description", "address", "status"})
                check(member(va, f) != null && member(va, f).equals(member(vb, f)),
                        "the phones differ on " + f + ":\nA " + va + "\nB " + vb);
            check("150".equals(member(va, "fine_amount")), "the server value stands: " + va);
            check("\"B: east gate\"".equals(member(va, "address")), "B's address: " + va);
            check(b.notices().contains("\"kind\":\"conflict\""), "B has no conflict notice: " + b.notices());

            /* A refused edit is an exception with the schema's code and field. */
            try {
                a.update(id, "{\"grid\":\"not-a-grid\"}", null);
                check(false, "an invalid grid was accepted");
            } catch (CasesyncException e) {
                check("validation_failed".equals(e.getApiCode()), "api code " + e.getApiCode() + ": " + e.getMessage());
                check(e.getField() != null && e.getField().contains("grid"), "field " + e.getField());
            }
        }
        try {
            closed.list();
            check(false, "a closed handle answered");
        } catch (CasesyncException e) {
            check(e.getMessage().contains("closed"), e.getMessage());
        }
        System.out.println("OK two phones converged; B's listener saw the conflict");
    }
}
