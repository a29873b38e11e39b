/* test_evidence.c -- evidence is reachable only through scope (PROTOCOL v2
 * amendments): who may HEAD and GET a blob, who may list a hash in an
 * evidence item (evidence_unknown), the headers blobs are served with, and
 * ownership of the other ids a client chooses (record, item, upload ids). */
#include "tests/harness.h"

#include <ftw.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "clients/c/casesync.h"

#include "sync/blobs.h"

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))
#define TUS "Tus-Resumable: 1.0.0"

/* ---- helpers --------------------------------------------------------------------- */

static const char *sha_of(const void *data, size_t len) {
    unsigned char md[32];
    unsigned int n = 0;
    char *hex = hfmt("%64s", "");
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

static const char *b64s(const char *text) {
    size_t len = strlen(text);
    char *out = h_keep(malloc(len * 2 + 8), NULL);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)text, (int)len);
    return out;
}

/* POST /v1/uploads; the upload's path (pool) or NULL. */
static const char *up_create(srv_t *s, const char *token, size_t len, const char *sha, const char *mime) {
    const char *h[] = {TUS, hfmt("Upload-Length: %zu", len),
                       hfmt("Upload-Metadata: sha256 %s,mime %s", b64s(sha), b64s(mime)), NULL};
    resp_t r = http(s, "POST", "/v1/uploads", token, NULL, h);
    if (r.status != 201) {
        fprintf(stderr, "    POST /v1/uploads -> %ld %s\n", r.status, r.body);
        return NULL;
    }
    const char *loc = resp_header(&r, "Location");
    if (loc && strncmp(loc, s->base, strlen(s->base)) == 0) loc += strlen(s->base);
    return loc;
}

static resp_t up_patch(srv_t *s, const char *token, const char *path, const void *data, size_t len) {
    const char *h[] = {TUS, "Upload-Offset: 0", "Content-Type: application/offset+octet-stream", NULL};
    return http_raw(s, "PATCH", path, token, data, len, h);
}

/* The whole tus exchange for a small file: the PATCH's status (204 when the
 * bytes became the blob), or 0 when the create failed. */
static long upload(srv_t *s, const char *token, const char *text, const char *mime) {
    const char *path = up_create(s, token, strlen(text), sha_of(text, strlen(text)), mime);
    if (!path) return 0;
    resp_t r = up_patch(s, token, path, text, strlen(text));
    return r.status;
}

static const char *item(const char *id, const char *sha) {
    return hfmt("{\"id\":\"%s\",\"sha256\":\"%s\",\"size\":5,\"mime\":\"image/jpeg\",\"kind\":\"photo\","
                "\"captured_at\":\"%s\"}",
                id, sha, iso_now(-60000));
}

/* A create of a U1 (or U2) case whose evidence lists the hashes given. */
static const char *create_listing(const char *rid, const char *unit, const char *items_json) {
    return ch_create_in(rid, TYPE_VENDING, "general", unit, GRID1, hfmt("{\"evidence\":[%s]}", items_json));
}

static resp_t blob(srv_t *s, const char *method, const char *sha, const char *token) {
    return http(s, method, hfmt("/v1/blobs/%s", sha), token, NULL, NULL);
}

/* ---- 1. another unit's evidence --------------------------------------------------- */

/* The hole as it was: offx (unit U2) could HEAD U1's photo to learn its size
 * and type, then list its hash in a case of its own and GET the bytes. */
TEST(evidence_other_unit_cannot_probe_or_claim_a_blob) {
    srv_t s;
    START(s);
    phone_t a, x, sup;
    PHONE(a, s, "off1", "dev-A");
    PHONE(x, s, "offx", "dev-X");
    PHONE(sup, s, "sup1", "dev-S");
    const char *photo = "U1 photo of a vendor, secret";
    const char *sha = sha_of(photo, strlen(photo));
    resp_t r = phone_push(&a, changes(create_listing("01JDEVIDENCE000001", "U1", item("ev-1", sha))));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    ASSERT_INT(upload(&s, a.token, photo, "image/jpeg"), 204);

    /* Probing: the same 404 as for bytes that were never stored. */
    const char *nosuch = sha_of("never stored", 12);
    r = blob(&s, "HEAD", sha, x.token);
    ASSERT_STATUS(r, 404);
    ASSERT_MSG(!resp_header(&r, "Content-Type") || !strstr(resp_header(&r, "Content-Type"), "image"),
               "HEAD leaked the type: %s", resp_header(&r, "Content-Type"));
    resp_t none = blob(&s, "GET", nosuch, x.token);
    r = blob(&s, "GET", sha, x.token);
    ASSERT_ERROR(r, 404, "not_found");
    ASSERT_ERROR(none, 404, "not_found");
    ASSERT_STR(jstr(resp_json(&r), "error.message"),
               hfmt("no blob %s", sha)); /* the same words as for an unknown hash */
    ASSERT_STR(jstr(resp_json(&none), "error.message"), hfmt("no blob %s", nosuch));

    /* Claiming: a case of their own that lists the hash is rejected, and kept. */
    r = phone_push(&x, changes(create_listing("01JDEVIDENCEX00001", "U2",
                                              hfmt("%s,%s", item("ev-ok", nosuch), item("ev-x", sha)))));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "rejected");
    ASSERT_JSTR(resp_json(&r), "results[0].error.code", "evidence_unknown");
    ASSERT_JSTR(resp_json(&r), "results[0].error.field", "changes[0].fields.evidence[1].sha256");
    r = phone_get(&x, "/v1/rejections");
    ASSERT_STATUS(r, 200);
    cJSON *rej = jarr_find(jget(resp_json(&r), "items"), "record_id", "01JDEVIDENCEX00001");
    ASSERT_MSG(rej != NULL, "the rejected change is not in /v1/rejections: %s", r.body);
    ASSERT_JSTR(rej, "error.code", "evidence_unknown");
    ASSERT_JSTR(rej, "change.fields.evidence[1].sha256", sha);
    r = blob(&s, "GET", sha, x.token);
    ASSERT_ERROR(r, 404, "not_found");

    /* The same through append on a case they own. */
    r = phone_push(&x, changes(create_listing("01JDEVIDENCEX00002", "U2", item("ev-own", nosuch))));
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = phone_push(&x, changes(ch_update("01JDEVIDENCEX00002", 1, NULL,
                                         hfmt("{\"evidence\":[%s]}", item("ev-x2", sha)))));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "rejected");
    ASSERT_JSTR(resp_json(&r), "results[0].error.code", "evidence_unknown");
    ASSERT_JSTR(resp_json(&r), "results[0].error.field", "changes[0].append.evidence[0].sha256");
    ASSERT_JINT(resp_json(&r), "results[0].version", 1);
    r = blob(&s, "GET", sha, x.token);
    ASSERT_ERROR(r, 404, "not_found");
    r = blob(&s, "HEAD", sha, x.token);
    ASSERT_STATUS(r, 404);

    /* The unit's supervisor reads it. */
    r = blob(&s, "GET", sha, sup.token);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(r.len == strlen(photo) && memcmp(r.body, photo, r.len) == 0, "the supervisor got other bytes");
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 2. the headers blobs are served with -------------------------------------------- */

static const char *check_blob_headers(resp_t *r, const char *sha) {
    const char *cd = resp_header(r, "Content-Disposition");
    if (!cd || strncmp(cd, "attachment", 10) != 0 || !strstr(cd, sha))
        return hfmt("Content-Disposition: %s", cd ? cd : "(absent)");
    if (!resp_header(r, "X-Content-Type-Options") ||
        strcmp(resp_header(r, "X-Content-Type-Options"), "nosniff"))
        return "no X-Content-Type-Options: nosniff";
    if (!resp_header(r, "Content-Security-Policy") ||
        strcmp(resp_header(r, "Content-Security-Policy"), "sandbox"))
        return hfmt("Content-Security-Policy: %s", resp_header(r, "Content-Security-Policy"));
    return NULL;
}

TEST(evidence_blobs_served_as_attachments_in_a_sandbox) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    /* A "photo" that is a web page, declared as one. */
    const char *page = "<html><script>alert(document.cookie)</script></html>";
    const char *sha = sha_of(page, strlen(page));
    resp_t r = phone_push(&a, changes(create_listing("01JDEVIDENCE000002", "U1", item("ev-h", sha))));
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    const char *path = up_create(&s, a.token, strlen(page), sha, "text/html");
    ASSERT(path != NULL);
    r = up_patch(&s, a.token, path, page, strlen(page));
    ASSERT_STATUS(r, 204);

    const char *why;
    r = blob(&s, "HEAD", sha, a.token);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(!(why = check_blob_headers(&r, sha)), "HEAD: %s", why);
    r = blob(&s, "GET", sha, a.token);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(!(why = check_blob_headers(&r, sha)), "GET: %s", why);
    ASSERT_MSG(r.len == strlen(page), "GET gave %zu bytes", r.len);
    /* Range still works, with the same headers. */
    const char *range[] = {"Range: bytes=6-13", NULL};
    r = http(&s, "GET", hfmt("/v1/blobs/%s", sha), a.token, NULL, range);
    ASSERT_STATUS(r, 206);
    ASSERT_MSG(r.len == 8 && memcmp(r.body, "<script>", 8) == 0, "range gave %.*s", (int)r.len, r.body);
    ASSERT_STR(resp_header(&r, "Content-Range"), hfmt("bytes 6-13/%zu", strlen(page)));
    ASSERT_MSG(!(why = check_blob_headers(&r, sha)), "GET with Range: %s", why);
    const char *inm[] = {hfmt("If-None-Match: \"%s\"", sha), NULL};
    r = http(&s, "GET", hfmt("/v1/blobs/%s", sha), a.token, NULL, inm);
    ASSERT_STATUS(r, 304);
    ASSERT_MSG(!(why = check_blob_headers(&r, sha)), "304: %s", why);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 3. offline first: the item before its bytes ----------------------------------- */

/* The phone's normal order: the item is pushed, the bytes follow. Until they
 * arrive nobody reads anything; once its lister uploaded them, the unit's
 * supervisor and the officers who see the case read them, others do not. */
TEST(evidence_item_before_bytes_then_readable_in_scope) {
    srv_t s;
    START(s);
    phone_t a, o2, o3, sup, x;
    PHONE(a, s, "off1", "dev-A");
    PHONE(o2, s, "off2", "dev-2");
    PHONE(o3, s, "off3", "dev-3");
    PHONE(sup, s, "sup1", "dev-S");
    PHONE(x, s, "offx", "dev-X");
    const char *photo = "a photo taken offline";
    const char *sha = sha_of(photo, strlen(photo));
    resp_t r = phone_push(&a, changes(create_listing("01JDEVIDENCE000003", "U1", item("ev-1", sha))));
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = blob(&s, "HEAD", sha, a.token);
    ASSERT_STATUS(r, 404);
    r = blob(&s, "GET", sha, sup.token);
    ASSERT_ERROR(r, 404, "not_found");
    ASSERT_INT(upload(&s, a.token, photo, "image/jpeg"), 204);

    r = blob(&s, "HEAD", sha, a.token);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(resp_header(&r, "Content-Length"), hfmt("%zu", strlen(photo)));
    r = blob(&s, "GET", sha, sup.token);
    ASSERT_STATUS(r, 200);
    r = blob(&s, "GET", sha, o2.token); /* the same grid: sees the case */
    ASSERT_STATUS(r, 200);
    r = blob(&s, "GET", sha, o3.token); /* another grid of the unit: does not */
    ASSERT_ERROR(r, 404, "not_found");
    r = blob(&s, "HEAD", sha, x.token);
    ASSERT_STATUS(r, 404);
    ASSERT_INT(srv_stop(&s), 0);
}

/* A hash listed before its bytes are stored is accepted; bytes uploaded
 * later by someone else (another unit) give that lister nothing. Uploading
 * the bytes themselves does. */
TEST(evidence_pending_hash_accepted_but_grants_nothing_until_lister_uploads) {
    srv_t s;
    START(s);
    phone_t a, x, supx;
    PHONE(a, s, "off1", "dev-A");
    PHONE(x, s, "offx", "dev-X");
    ASSERT(user_add(&s, "supx", "supx-pass-123", "supervisor", "U2", NULL) != NULL);
    ASSERT_MSG(phone_login(&supx, &s, "supx", "supx-pass-123", "dev-SX") == 0, "login of supx failed");
    const char *photo = "U1's photo whose hash leaked before upload";
    const char *sha = sha_of(photo, strlen(photo));

    /* offx knows the hash, not the bytes: the listing is pending and accepted. */
    resp_t r = phone_push(&x, changes(create_listing("01JDEVIDENCEX00003", "U2", item("ev-x", sha))));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");

    /* U1's officer uploads the bytes (and lists them). */
    ASSERT_INT(upload(&s, a.token, photo, "image/jpeg"), 204);
    r = blob(&s, "HEAD", sha, a.token); /* an uploader checks their upload finished */
    ASSERT_STATUS(r, 200);
    r = phone_push(&a, changes(create_listing("01JDEVIDENCE000004", "U1", item("ev-a", sha))));
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");

    /* offx's earlier listing opens nothing, to them or their supervisor. */
    r = blob(&s, "GET", sha, x.token);
    ASSERT_ERROR(r, 404, "not_found");
    r = blob(&s, "HEAD", sha, x.token);
    ASSERT_STATUS(r, 404);
    r = blob(&s, "GET", sha, supx.token);
    ASSERT_ERROR(r, 404, "not_found");
    /* A new listing now that the bytes are stored: evidence_unknown. */
    r = phone_push(&x, changes(ch_update("01JDEVIDENCEX00003", 1, NULL,
                                         hfmt("{\"evidence\":[%s]}", item("ev-x2", sha)))));
    ASSERT_JSTR(resp_json(&r), "results[0].status", "rejected");
    ASSERT_JSTR(resp_json(&r), "results[0].error.code", "evidence_unknown");
    /* The item already in the case, sent again, is not judged again (items are immutable). */
    r = phone_push(&x, changes(ch_update("01JDEVIDENCEX00003", 1, NULL,
                                         hfmt("{\"evidence\":[%s]}", item("ev-x", sha)))));
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");

    /* Holding the bytes and uploading them is proof enough: then offx, and
     * whoever sees offx's case, read them. */
    ASSERT_INT(upload(&s, x.token, photo, "image/jpeg"), 204);
    r = blob(&s, "GET", sha, x.token);
    ASSERT_STATUS(r, 200);
    r = blob(&s, "GET", sha, supx.token);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 4. the uploader, and users who see a listing ----------------------------------- */

TEST(evidence_uploader_and_scope_may_list_stored_bytes) {
    srv_t s;
    START(s);
    phone_t a, sup, o3, adm;
    PHONE(a, s, "off1", "dev-A");
    PHONE(sup, s, "sup1", "dev-S");
    PHONE(o3, s, "off3", "dev-3");
    PHONE(adm, s, "admin", "dev-ADM");
    const char *photo = "uploaded first, listed later";
    const char *sha = sha_of(photo, strlen(photo));

    /* Bytes first: their uploader reads them, nobody else yet. */
    ASSERT_INT(upload(&s, a.token, photo, "image/jpeg"), 204);
    resp_t r = blob(&s, "GET", sha, a.token);
    ASSERT_STATUS(r, 200);
    r = blob(&s, "GET", sha, sup.token);
    ASSERT_ERROR(r, 404, "not_found");
    r = blob(&s, "GET", sha, adm.token);
    ASSERT_STATUS(r, 200);

    /* The uploader lists them: accepted, and the unit's supervisor reads them. */
    r = phone_push(&a, changes(create_listing("01JDEVIDENCE000005", "U1", item("ev-1", sha))));
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = blob(&s, "GET", sha, sup.token);
    ASSERT_STATUS(r, 200);

    /* An officer of the unit who does not see the first case may not. */
    r = phone_push(&o3, changes(ch_create_in("01JDEVIDENCE000007", TYPE_VENDING, "general", "U1", GRID2,
                                             hfmt("{\"evidence\":[%s]}", item("ev-3", sha)))));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "rejected");
    ASSERT_JSTR(resp_json(&r), "results[0].error.code", "evidence_unknown");
    ASSERT_JSTR(resp_json(&r), "results[0].error.field", "changes[0].fields.evidence[0].sha256");
    /* The supervisor, who sees that case, may list them in another (in off3's grid). */
    r = phone_push(&sup, changes(ch_create_in("01JDEVIDENCE000006", TYPE_VENDING, "general", "U1", GRID2,
                                              hfmt("{\"evidence\":[%s]}", item("ev-s", sha)))));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    /* off3 now reads them through the supervisor's case in their grid. */
    r = blob(&s, "GET", sha, o3.token);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 5. other ids a client chooses ------------------------------------------------- */

TEST(evidence_foreign_ids_reveal_and_overwrite_nothing) {
    srv_t s;
    START(s);
    phone_t a, o2, x;
    PHONE(a, s, "off1", "dev-A");
    PHONE(o2, s, "off2", "dev-2");
    PHONE(x, s, "offx", "dev-X");
    const char *rid = "01JDEVIDENCE000008";
    const char *photo = "the first photo";
    const char *sha = sha_of(photo, strlen(photo));
    const char *other = sha_of("other bytes", 11);
    resp_t r = phone_push(&a, changes(create_listing(rid, "U1", item("ev-1", sha))));
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = phone_push(&a, changes(ch_update(rid, 1, "{\"description\":\"v2\"}",
                                         "{\"notes\":[{\"id\":\"n-1\",\"text\":\"the officer's note\"}]}")));
    ASSERT_JINT(resp_json(&r), "results[0].version", 2);

    /* Record id of another unit's case: rejected, without its version. */
    r = phone_push(&x, changes(create_listing(rid, "U2", item("ev-x", other))));
    ASSERT_JSTR(resp_json(&r), "results[0].status", "rejected");
    ASSERT_JINT(resp_json(&r), "results[0].version", 0);
    r = phone_push(&x, changes(ch_update(rid, 2, "{\"description\":\"mine\"}", NULL)));
    ASSERT_JSTR(resp_json(&r), "results[0].status", "rejected");
    ASSERT_JSTR(resp_json(&r), "results[0].error.code", "out_of_scope");
    ASSERT_JINT(resp_json(&r), "results[0].version", 0);

    /* Item ids of another user on a case both see: nothing is replaced. */
    r = phone_push(
        &o2, changes(ch_update(rid, 2, NULL,
                               hfmt("{\"evidence\":[%s],\"notes\":[{\"id\":\"n-1\",\"text\":\"forged\"}]}",
                                    item("ev-1", other)))));
    ASSERT_STATUS(r, 200);
    r = phone_get(&a, hfmt("/v1/cases/%s", rid));
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "fields.evidence"), 1);
    ASSERT_JSTR(resp_json(&r), "fields.evidence[0].sha256", sha);
    ASSERT_INT(jlen(resp_json(&r), "fields.notes"), 1);
    ASSERT_JSTR(resp_json(&r), "fields.notes[0].text", "the officer's note");
    ASSERT_JSTR(resp_json(&r), "fields.notes[0].author", a.user_id);

    /* Upload ids: another user's upload does not exist for them. */
    const char *path = up_create(&s, a.token, strlen(photo), sha, "image/jpeg");
    ASSERT(path != NULL);
    const char *tus_only[] = {TUS, NULL};
    r = http(&s, "HEAD", path, o2.token, NULL, tus_only);
    ASSERT_STATUS(r, 404);
    r = http(&s, "GET", path, x.token, NULL, NULL);
    ASSERT_STATUS(r, 404);
    r = up_patch(&s, x.token, path, photo, strlen(photo));
    ASSERT_STATUS(r, 404);
    r = http(&s, "DELETE", path, x.token, NULL, tus_only);
    ASSERT_STATUS(r, 404);
    r = http(&s, "HEAD", path, a.token, NULL, tus_only);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(resp_header(&r, "Upload-Offset"), "0");
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 6. the decisions ---------------------------------------------------------------- */

TEST(evidence_judgements) {
    ASSERT_INT(blobs_judge_read(ROLE_ADMIN, 0, 0), BLOB_READ_OK);
    ASSERT_INT(blobs_judge_read(ROLE_SUPERVISOR, 0, 0), BLOB_READ_HIDDEN);
    ASSERT_INT(blobs_judge_read(ROLE_AUXILIARY, 1, 0), BLOB_READ_OK);
    ASSERT_INT(blobs_judge_read(ROLE_OFFICER, 0, 1), BLOB_READ_OK);
    ASSERT_INT(blobs_judge_listing(0, 0), BLOB_LIST_PENDING);
    ASSERT_INT(blobs_judge_listing(0, 1), BLOB_LIST_PENDING);
    ASSERT_INT(blobs_judge_listing(1, 1), BLOB_LIST_VOUCHED);
    ASSERT_INT(blobs_judge_listing(1, 0), BLOB_LIST_REFUSED);
}

/* ---- 7. the client library holds an evidence_unknown change for its upload -------- */

static int rm_one(const char *p, const struct stat *sb, int f, struct FTW *ftw) {
    (void)sb, (void)f, (void)ftw;
    remove(p);
    return 0;
}

static void rm_tree(void *dir) {
    if (dir) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static void close_lib(void *h) {
    casesync_close(h);
}

/* offx's phone holds a photo whose bytes U1 uploaded first (a forwarded
 * picture): the push is rejected with evidence_unknown, the library keeps the
 * change, uploads the bytes (which makes offx an uploader) and pushes it
 * again on the next sync, where it is accepted. */
TEST(evidence_client_holds_unknown_evidence_until_uploaded) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    ASSERT(std_user(&s, "offx") != NULL);
    const char *photo = "a picture both units hold";
    const char *sha = sha_of(photo, strlen(photo));
    ASSERT_INT(upload(&s, a.token, photo, "image/jpeg"), 204);

    char *dir = strdup("/tmp/casesync-evc-XXXXXX");
    ASSERT(dir && mkdtemp(dir));
    h_keep(dir, rm_tree);
    casesync_options_t o = {0};
    o.state_dir = dir;
    o.no_sync = 1;
    casesync_t *h = NULL;
    casesync_error_t err;
    ASSERT_INT(casesync_open(&o, &h, &err), 0);
    h_keep(h, close_lib);
    ASSERT_INT(casesync_login(h, s.base, "offx", std_pass("offx"), "dev-XC", &err), 0);
    char id[CASESYNC_ID_MAX];
    const char *fields = hfmt("{\"procedure\":\"general\",\"source\":\"patrol\",\"description\":\"vendor\","
                              "\"occurred_at\":\"%s\",\"grid\":\"%s\",\"address\":\"2 Qianmen St\","
                              "\"location\":{\"lon\":116.39,\"lat\":39.9,\"crs\":\"wgs84\"}}",
                              iso_now(-60000), GRID1);
    ASSERT_MSG(casesync_create(h, TYPE_VENDING, fields, NULL, id, &err) == 0, "create: %s", err.message);
    const char *path = hfmt("%s/forwarded.jpg", dir);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    fputs(photo, f);
    fclose(f);
    ASSERT_MSG(casesync_attach(h, id, path, "photo", "image/jpeg", NULL, &err) == 0, "attach: %s",
               err.message);

    casesync_report_t rep;
    ASSERT_MSG(casesync_sync(h, 0, &rep, &err) == 0, "sync: %s", err.message);
    ASSERT_INT(rep.rejected, 1);
    ASSERT_INT(rep.uploads_done, 1);
    ASSERT_MSG(casesync_sync(h, 0, &rep, &err) == 0, "sync: %s", err.message);
    ASSERT_INT(rep.applied, 1);
    ASSERT_INT(rep.rejected, 0);

    long code = 0;
    char *out = NULL;
    ASSERT_INT(casesync_request(h, "GET", hfmt("/v1/cases/%s", id), NULL, &code, &out, &err), 0);
    cJSON *rec = jparse(out ? out : "");
    casesync_free(out);
    ASSERT_INT(code, 200);
    ASSERT_JSTR(rec, "fields.evidence[0].sha256", sha);
    out = NULL;
    ASSERT_INT(casesync_request(h, "GET", hfmt("/v1/blobs/%s", sha), NULL, &code, &out, &err), 0);
    casesync_free(out);
    ASSERT_INT(code, 200);
    ASSERT_INT(casesync_notices(h, &out), 0);
    cJSON *notices = jparse(out);
    casesync_free(out);
    cJSON *n = jarr_find(notices, "kind", "rejected");
    ASSERT_MSG(n != NULL, "no rejection notice: %s", jprint(notices));
    ASSERT_JSTR(n, "held_for_upload", sha);
    ASSERT_INT(srv_stop(&s), 0);
}
