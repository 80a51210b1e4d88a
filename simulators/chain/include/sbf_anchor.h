/*
 * sbf_anchor.h — a small runtime for writing Anchor-compatible Solana programs in C (SBPF v0,
 * clang 14, -mcpu=v2). Single header; a program is one .c file that includes it and its
 * generated IDL header (idl_<program>.h, written by simulators/chain/idlgen.py).
 *
 * API
 * ---
 * Types      u8 u16 u32 u64 i64 bool; Pubkey {u8 x[32]}; AccountInfo (== SolAccountInfo, usable in
 *            CPIs); Seed {addr,len}; SignerSeeds {addr,len}; AccountMeta; Instruction; u128 {lo,hi}.
 * Entry      Define `u64 process(Context *ctx)` and `GX_ENTRYPOINT(&ID, <PROGRAM>_error_text)`.
 *            Context holds ka[] (first GX_MAX_ACCOUNTS accounts; duplicates are copies of the
 *            first occurrence), ka_num, data/data_len (instruction data) and program_id. A program
 *            ID other than the declared one fails with 4100 (DeclaredProgramIdMismatch); any
 *            non-zero return is an Anchor error number, logged as Anchor's full line ("... Error
 *            Code: Name. Error Number: N. Error Message: msg.") when it has a name, else as
 *            "AnchorError occurred. Error Number: N.".
 * Dispatch   gx_instruction(ctx, &disc, &args): 100 InstructionMissing when data < 8 bytes.
 *            Switch on the u64 (little-endian) discriminator constants of the IDL header (unknown
 *            → 101) and read the arguments from `args`.
 * Borsh      Reader r; rd_init(&r, p, n); rd_u8/u16/u32/u64/i64/bool/pubkey/string/enum_u8/option;
 *            rd_bool rejects bytes other than 0/1, rd_string checks UTF-8 and returns a pointer
 *            into the buffer, rd_enum_u8 rejects indexes >= variants. Errors are sticky in r.err:
 *            check once after reading (102 for instruction args, 3003 for account data).
 *            Writer w; wr_init(&w, p, cap); wr_u8/u16/u32/u64/i64/bool/pubkey/bytes/string/option;
 *            overflow is sticky in w.err (3004 AccountDidNotSerialize for account data).
 * Checks     gx_signer (3010), gx_writable (2000), gx_program (3008 id, 3009 not executable),
 *            gx_address (2012), gx_sysvar (3015), gx_owned_by (3007),
 *            gx_account(ai, owner, disc, min_size): 3012 not initialized, 3007 wrong owner,
 *            3001 no discriminator, 3002 wrong discriminator, 3003 shorter than min_size.
 *            gx_check_pda(ai, seeds, n, program, &bump): canonical bump, 2006 ConstraintSeeds.
 *            TRY(expr) returns the error code of expr when it is non-zero.
 * PDAs       gx_find_pda(seeds, n, program, &out, &bump); SEED_LIT("text"), SEED_KEY(&pk),
 *            SEED_BYTES(p, n); gx_ata_address(wallet, token_program, mint, &out).
 * Accounts   gx_create_account(payer, target, space, owner, signer_seeds_or_NULL): rent-exempt
 *            funding from the rent sysvar, create_account (or transfer+allocate+assign when the
 *            target already holds lamports; 4101 when target is the payer), then refreshes
 *            target->data_len.
 *            gx_init_pda(target, payer, &PdaInit{program, owner, space, seeds, n}): Anchor `init`
 *            of a PDA (2006 / 2000 / 3010 checks, canonical bump appended to seeds[n]).
 *            gx_rent_exempt(space) lamports. gx_refresh(ai) re-reads data_len after a CPI.
 * CPI        gx_invoke(ix, infos, n, signer_or_NULL); CpiCtx {program, signer} for the SPL Token
 *            helpers gx_token_initialize_mint2, gx_token_mint_to, gx_token_transfer,
 *            gx_token_burn, gx_token_transfer_checked; gx_ata_create(ata_program_ai,
 *            accounts[6]) (payer, ata, wallet, mint, system_program, token_program).
 *            Well-known IDs: SYSTEM_PROGRAM_ID, TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID,
 *            ATA_PROGRAM_ID, RENT_SYSVAR_ID, INSTRUCTIONS_SYSVAR_ID.
 * Events     gx_emit(buf, len) — Anchor `emit!`: one sol_log_data slice (disc + borsh fields);
 *            gx_event_begin(&w, EV_DISC) ... wr_*(&w, field) ... gx_event_end(&w) builds it on the heap.
 * Fields     U64_AT(p, off), I64_AT, U32_AT, PUBKEY_AT: unaligned little-endian field access.
 * Misc       gx_unix_timestamp(), gx_set_return_data(p, n), gx_get_return_data(p, n, &program),
 *            gx_log("literal"), pubkey_eq, gx_memcpy/gx_memset/gx_memcmp, u64 checked math
 *            gx_add_overflows/gx_mul_overflows, gx_sat_sub, 128-bit gx_mul_64x64 / gx_div_128_64,
 *            gx_panic() (the overflow-check abort of a Rust program).
 *
 * Constraints of the target: at most 5 arguments per call, no struct by value, no floats, no
 * signed division, no mutable globals, frames up to 4096 bytes (enforced by the linker).
 */
#pragma once

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

#define GX_FN static __attribute__((unused))

typedef struct { u8 x[32]; } Pubkey;

typedef struct {
  Pubkey *key;
  u64 *lamports;
  u64 data_len;
  u8 *data;
  Pubkey *owner;
  u64 rent_epoch;
  bool is_signer;
  bool is_writable;
  bool executable;
} AccountInfo;

typedef struct { const u8 *addr; u64 len; } Seed;
typedef struct { const Seed *addr; u64 len; } SignerSeeds;
typedef struct { const Pubkey *pubkey; bool is_writable; bool is_signer; } AccountMeta;
typedef struct {
  const Pubkey *program_id;
  const AccountMeta *accounts;
  u64 account_len;
  const u8 *data;
  u64 data_len;
} Instruction;
typedef struct { const u8 *addr; u64 len; } Bytes;
typedef struct { u64 lo, hi; } u128;

/* ---- syscalls (names checked by the linker) ---- */
extern void sol_log_(const char *, u64);
extern void sol_log_64_(u64, u64, u64, u64, u64);
extern void sol_log_data(const Bytes *, u64);
extern void sol_log_pubkey(const Pubkey *);
extern void sol_panic_(const char *, u64, u64, u64);
extern u64 sol_try_find_program_address(const Seed *, u64, const Pubkey *, Pubkey *, u8 *);
extern u64 sol_create_program_address(const Seed *, u64, const Pubkey *, Pubkey *);
extern u64 sol_invoke_signed_c(const Instruction *, const AccountInfo *, int, const SignerSeeds *, int);
extern u64 sol_get_clock_sysvar(void *);
extern u64 sol_get_rent_sysvar(void *);
extern void sol_set_return_data(const u8 *, u64);
extern u64 sol_get_return_data(u8 *, u64, Pubkey *);
extern void sol_memcpy_(void *, const void *, u64);
extern void sol_memmove_(void *, const void *, u64);
extern void sol_memset_(void *, int, u64);
extern void sol_memcmp_(const void *, const void *, u64, int *);

/* Definitions for the calls the compiler itself may emit. */
void *memcpy(void *d, const void *s, u64 n) { sol_memmove_(d, s, n); return d; }
void *memmove(void *d, const void *s, u64 n) { sol_memmove_(d, s, n); return d; }
void *memset(void *d, int c, u64 n) { sol_memset_(d, c, n); return d; }
int memcmp(const void *a, const void *b, u64 n) { int r = 0; sol_memcmp_(a, b, n, &r); return r; }

GX_FN void gx_memcpy(void *d, const void *s, u64 n) { if (n) sol_memmove_(d, s, n); }
GX_FN void gx_memset(void *d, u8 c, u64 n) { if (n) sol_memset_(d, c, n); }
GX_FN int gx_memcmp(const void *a, const void *b, u64 n) {
  int r = 0;
  if (n) sol_memcmp_(a, b, n, &r);
  return r;
}
GX_FN bool pubkey_eq(const Pubkey *a, const Pubkey *b) {
  const u64 *x = (const u64 *)a->x, *y = (const u64 *)b->x;
  return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}
GX_FN void pubkey_copy(Pubkey *d, const Pubkey *s) { *d = *s; }

#define U64_AT(p, off) (*(u64 *)((u8 *)(p) + (off)))
#define I64_AT(p, off) (*(i64 *)((u8 *)(p) + (off)))
#define U32_AT(p, off) (*(u32 *)((u8 *)(p) + (off)))
#define PUBKEY_AT(p, off) ((Pubkey *)((u8 *)(p) + (off)))
#define gx_log(lit) sol_log_((lit), sizeof(lit) - 1)
#define TRY(expr) do { u64 _gx_rc = (expr); if (_gx_rc) return _gx_rc; } while (0)
#define SEED_LIT(lit) ((Seed){(const u8 *)(lit), sizeof(lit) - 1})
#define SEED_KEY(pk) ((Seed){(pk)->x, 32})
#define SEED_BYTES(p, n) ((Seed){(const u8 *)(p), (n)})

GX_FN void gx_panic(void) {
  static const char where[] = "arithmetic overflow";
  sol_panic_(where, sizeof(where) - 1, 0, 0);
}

/* ---- Anchor framework error numbers ---- */
enum {
  ERR_INSTRUCTION_MISSING = 100,
  ERR_INSTRUCTION_FALLBACK_NOT_FOUND = 101,
  ERR_INSTRUCTION_DID_NOT_DESERIALIZE = 102,
  ERR_INSTRUCTION_DID_NOT_SERIALIZE = 103,
  ERR_CONSTRAINT_MUT = 2000,
  ERR_CONSTRAINT_HAS_ONE = 2001,
  ERR_CONSTRAINT_SIGNER = 2002,
  ERR_CONSTRAINT_RAW = 2003,
  ERR_CONSTRAINT_OWNER = 2004,
  ERR_CONSTRAINT_SEEDS = 2006,
  ERR_CONSTRAINT_ASSOCIATED = 2009,
  ERR_CONSTRAINT_ADDRESS = 2012,
  ERR_CONSTRAINT_TOKEN_MINT = 2014,
  ERR_CONSTRAINT_TOKEN_OWNER = 2015,
  ERR_CONSTRAINT_MINT_MINT_AUTHORITY = 2016,
  ERR_CONSTRAINT_MINT_DECIMALS = 2018,
  ERR_CONSTRAINT_ASSOCIATED_TOKEN_TOKEN_PROGRAM = 2023,
  ERR_CONSTRAINT_DUPLICATE_MUTABLE_ACCOUNT = 2040,
  ERR_ACCOUNT_DISCRIMINATOR_ALREADY_SET = 3000,
  ERR_ACCOUNT_DISCRIMINATOR_NOT_FOUND = 3001,
  ERR_ACCOUNT_DISCRIMINATOR_MISMATCH = 3002,
  ERR_ACCOUNT_DID_NOT_DESERIALIZE = 3003,
  ERR_ACCOUNT_DID_NOT_SERIALIZE = 3004,
  ERR_ACCOUNT_NOT_ENOUGH_KEYS = 3005,
  ERR_ACCOUNT_NOT_MUTABLE = 3006,
  ERR_ACCOUNT_OWNED_BY_WRONG_PROGRAM = 3007,
  ERR_INVALID_PROGRAM_ID = 3008,
  ERR_INVALID_PROGRAM_EXECUTABLE = 3009,
  ERR_ACCOUNT_NOT_SIGNER = 3010,
  ERR_ACCOUNT_NOT_SYSTEM_OWNED = 3011,
  ERR_ACCOUNT_NOT_INITIALIZED = 3012,
  ERR_ACCOUNT_SYSVAR_MISMATCH = 3015,
  ERR_DECLARED_PROGRAM_ID_MISMATCH = 4100,
  ERR_TRYING_TO_INIT_PAYER_AS_PROGRAM_ACCOUNT = 4101,
};

/* ---- well-known addresses ---- */
static const Pubkey SYSTEM_PROGRAM_ID = {{0}};
static const Pubkey TOKEN_PROGRAM_ID = {{6, 221, 246, 225, 215, 101, 161, 147, 217, 203, 225, 70, 206,
  235, 121, 172, 28, 180, 133, 237, 95, 91, 55, 145, 58, 140, 245, 133, 126, 255, 0, 169}};
static const Pubkey TOKEN_2022_PROGRAM_ID = {{6, 221, 246, 225, 238, 117, 143, 222, 24, 66, 93, 188,
  228, 108, 205, 218, 182, 26, 252, 77, 131, 185, 13, 39, 254, 189, 249, 40, 216, 161, 139, 252}};
static const Pubkey ATA_PROGRAM_ID = {{140, 151, 37, 143, 78, 36, 137, 241, 187, 61, 16, 41, 20, 142,
  13, 131, 11, 90, 19, 153, 218, 255, 16, 132, 4, 142, 123, 216, 219, 233, 248, 89}};
static const Pubkey RENT_SYSVAR_ID = {{6, 167, 213, 23, 25, 44, 92, 81, 33, 140, 201, 76, 61, 74, 241,
  127, 88, 218, 238, 8, 155, 161, 253, 68, 227, 219, 217, 138, 0, 0, 0, 0}};
static const Pubkey INSTRUCTIONS_SYSVAR_ID = {{6, 167, 213, 23, 24, 123, 209, 102, 53, 218, 212, 4, 85,
  253, 194, 192, 193, 36, 198, 143, 33, 86, 117, 165, 219, 186, 203, 95, 8, 0, 0, 0}};

/* ---- program input ---- */
#ifndef GX_MAX_ACCOUNTS
#define GX_MAX_ACCOUNTS 16
#endif
#define GX_REALLOC_ROOM 10240

typedef struct {
  AccountInfo ka[GX_MAX_ACCOUNTS];
  u64 ka_num;
  const u8 *data;
  u64 data_len;
  const Pubkey *program_id;
} Context;

/* Parse the aligned (BPF loader 2/3) input serialization. */
GX_FN void gx_deserialize(u8 *input, Context *ctx) {
  u64 n = *(u64 *)input;
  u8 *p = input + 8;
  ctx->ka_num = n < GX_MAX_ACCOUNTS ? n : GX_MAX_ACCOUNTS;
  for (u64 i = 0; i < n; i++) {
    u8 dup = p[0];
    if (dup != 0xff) {
      if (i < GX_MAX_ACCOUNTS && dup < GX_MAX_ACCOUNTS) ctx->ka[i] = ctx->ka[dup];
      p += 8;
      continue;
    }
    AccountInfo a;
    a.is_signer = p[1];
    a.is_writable = p[2];
    a.executable = p[3];
    p += 8;
    a.key = (Pubkey *)p;
    p += 32;
    a.owner = (Pubkey *)p;
    p += 32;
    a.lamports = (u64 *)p;
    p += 8;
    a.data_len = *(u64 *)p;
    p += 8;
    a.data = p;
    p += a.data_len + GX_REALLOC_ROOM;
    p = (u8 *)(((u64)p + 7) & ~(u64)7);
    a.rent_epoch = *(u64 *)p;
    p += 8;
    if (i < GX_MAX_ACCOUNTS) ctx->ka[i] = a;
  }
  ctx->data_len = *(u64 *)p;
  p += 8;
  ctx->data = p;
  p += ctx->data_len;
  ctx->program_id = (const Pubkey *)p;
}

/* ---- Anchor error log lines ---- */
typedef struct { const char *name; const char *msg; } ErrorText;

/* Name and message of the Anchor framework errors this runtime returns. */
GX_FN bool gx_framework_error(u64 code, ErrorText *t) {
  switch (code) {
#define GX_E(c, n, m) case c: t->name = n; t->msg = m; return true;
    GX_E(100, "InstructionMissing", "8 byte instruction identifier not provided")
    GX_E(101, "InstructionFallbackNotFound", "Fallback functions are not supported")
    GX_E(102, "InstructionDidNotDeserialize", "The program could not deserialize the given instruction")
    GX_E(2000, "ConstraintMut", "A mut constraint was violated")
    GX_E(2001, "ConstraintHasOne", "A has one constraint was violated")
    GX_E(2002, "ConstraintSigner", "A signer constraint was violated")
    GX_E(2003, "ConstraintRaw", "A raw constraint was violated")
    GX_E(2006, "ConstraintSeeds", "A seeds constraint was violated")
    GX_E(2009, "ConstraintAssociated", "An associated constraint was violated")
    GX_E(2012, "ConstraintAddress", "An address constraint was violated")
    GX_E(2014, "ConstraintTokenMint", "A token mint constraint was violated")
    GX_E(2015, "ConstraintTokenOwner", "A token owner constraint was violated")
    GX_E(2023, "ConstraintAssociatedTokenTokenProgram",
         "An associated token account token program constraint was violated")
    GX_E(3001, "AccountDiscriminatorNotFound", "No discriminator was found on the account")
    GX_E(3002, "AccountDiscriminatorMismatch", "Account discriminator did not match what was expected")
    GX_E(3003, "AccountDidNotDeserialize", "Failed to deserialize the account")
    GX_E(3004, "AccountDidNotSerialize", "Failed to serialize the account")
    GX_E(3005, "AccountNotEnoughKeys", "Not enough account keys given to the instruction")
    GX_E(3007, "AccountOwnedByWrongProgram", "The given account is owned by a different program than expected")
    GX_E(3008, "InvalidProgramId", "Program ID was not as expected")
    GX_E(3009, "InvalidProgramExecutable", "Program account is not executable")
    GX_E(3010, "AccountNotSigner", "The given account did not sign")
    GX_E(3012, "AccountNotInitialized", "The program expected this account to be already initialized")
    GX_E(3015, "AccountSysvarMismatch", "The given public key does not match the required sysvar")
    GX_E(4100, "DeclaredProgramIdMismatch", "The declared program id does not match the actual program id")
#undef GX_E
    default: return false;
  }
}

GX_FN u64 gx_append(char *buf, u64 n, u64 cap, const char *s) {
  while (*s && n < cap) buf[n++] = *s++;
  return n;
}

/* The decimal digits of `v`, appended. */
GX_FN u64 gx_append_u64(char *buf, u64 n, u64 cap, u64 v) {
  char digits[21];
  int k = 20;
  digits[20] = 0;
  do { digits[--k] = (char)('0' + v % 10); v /= 10; } while (v && k > 0);
  return gx_append(buf, n, cap, digits + k);
}

/* The line for an error without a name: "AnchorError occurred. Error Number: N." */
GX_FN void gx_log_error(u64 code) {
  char buf[64];
  u64 n = gx_append(buf, 0, sizeof(buf), "AnchorError occurred. Error Number: ");
  n = gx_append_u64(buf, n, sizeof(buf), code);
  n = gx_append(buf, n, sizeof(buf), ".");
  sol_log_(buf, n);
}

/* Anchor's error line: "AnchorError occurred. Error Code: X. Error Number: N. Error Message: M." */
GX_FN void gx_log_anchor_error(u64 code, const ErrorText *t) {
  char buf[320];
  u64 n = gx_append(buf, 0, sizeof(buf), "AnchorError occurred. Error Code: ");
  n = gx_append(buf, n, sizeof(buf), t->name);
  n = gx_append(buf, n, sizeof(buf), ". Error Number: ");
  n = gx_append_u64(buf, n, sizeof(buf), code);
  n = gx_append(buf, n, sizeof(buf), ". Error Message: ");
  n = gx_append(buf, n, sizeof(buf), t->msg);
  n = gx_append(buf, n, sizeof(buf), ".");
  sol_log_(buf, n);
}

/* The program's entrypoint: checks the declared program ID, runs `process` and logs a failure
 * the way Anchor does. `program_error(code, &text)` (generated as <PROGRAM>_error_text in
 * idl_<program>.h) names the program's errors, the runtime the framework's; any other code gets
 * the short line. */
#define GX_ENTRYPOINT(declared_id, program_error)                         \
  u64 process(Context *ctx);                                              \
  u64 entrypoint(u8 *input) {                                             \
    Context ctx;                                                          \
    gx_deserialize(input, &ctx);                                          \
    u64 rc = pubkey_eq(ctx.program_id, (declared_id))                     \
                 ? process(&ctx) : ERR_DECLARED_PROGRAM_ID_MISMATCH;      \
    if (rc) {                                                             \
      ErrorText text;                                                     \
      if (program_error(rc, &text) || gx_framework_error(rc, &text))      \
        gx_log_anchor_error(rc, &text);                                   \
      else                                                                \
        gx_log_error(rc);                                                 \
    }                                                                     \
    return rc;                                                            \
  }

/* Refresh data_len from the serialized input (the runtime updates it there after a CPI). */
GX_FN void gx_refresh(AccountInfo *a) { a->data_len = *(u64 *)(a->data - 8); }

/* ---- borsh reader ---- */
typedef struct { const u8 *p; u64 len; u64 pos; bool err; } Reader;

GX_FN void rd_init(Reader *r, const u8 *p, u64 len) { r->p = p; r->len = len; r->pos = 0; r->err = false; }

/* The instruction's 8-byte discriminator, and a reader over the arguments that follow it. */
GX_FN u64 gx_instruction(const Context *ctx, u64 *disc, Reader *args) {
  if (ctx->data_len < 8) return ERR_INSTRUCTION_MISSING;
  *disc = *(const u64 *)ctx->data;
  rd_init(args, ctx->data + 8, ctx->data_len - 8);
  return 0;
}
GX_FN const u8 *rd_take(Reader *r, u64 n) {
  if (r->err || n > r->len - r->pos) { r->err = true; return NULL; }
  const u8 *q = r->p + r->pos;
  r->pos += n;
  return q;
}
GX_FN u8 rd_u8(Reader *r) { const u8 *q = rd_take(r, 1); return q ? q[0] : 0; }
GX_FN u16 rd_u16(Reader *r) { const u8 *q = rd_take(r, 2); return q ? *(const u16 *)q : 0; }
GX_FN u32 rd_u32(Reader *r) { const u8 *q = rd_take(r, 4); return q ? *(const u32 *)q : 0; }
GX_FN u64 rd_u64(Reader *r) { const u8 *q = rd_take(r, 8); return q ? *(const u64 *)q : 0; }
GX_FN i64 rd_i64(Reader *r) { return (i64)rd_u64(r); }
GX_FN bool rd_bool(Reader *r) {
  u8 v = rd_u8(r);
  if (v > 1) r->err = true;
  return v == 1;
}
GX_FN u8 rd_enum_u8(Reader *r, u8 variants) {
  u8 v = rd_u8(r);
  if (v >= variants) r->err = true;
  return v;
}
/* Option tag: returns true for Some; any tag other than 0/1 is an error. */
GX_FN bool rd_option(Reader *r) { return rd_bool(r); }
GX_FN void rd_pubkey(Reader *r, Pubkey *out) {
  const u8 *q = rd_take(r, 32);
  if (q) gx_memcpy(out->x, q, 32);
}

GX_FN bool gx_utf8_valid(const u8 *s, u64 n) {
  u64 i = 0;
  while (i < n) {
    u8 c = s[i];
    u64 k;
    u32 cp;
    if (c < 0x80) { i++; continue; }
    if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; }
    else return false;
    if (k > n - i - 1) return false;
    for (u64 j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += k + 1;
  }
  return true;
}

/* Borsh String: u32 length + UTF-8 bytes. Returns a pointer into the buffer. */
GX_FN const u8 *rd_string(Reader *r, u32 *len) {
  u32 n = rd_u32(r);
  const u8 *q = rd_take(r, n);
  if (!q || !gx_utf8_valid(q, n)) { r->err = true; *len = 0; return NULL; }
  *len = n;
  return q;
}

/* ---- borsh writer ---- */
typedef struct { u8 *p; u64 cap; u64 pos; bool err; } Writer;

GX_FN void wr_init(Writer *w, u8 *p, u64 cap) { w->p = p; w->cap = cap; w->pos = 0; w->err = false; }
GX_FN void wr_bytes(Writer *w, const void *src, u64 n) {
  if (w->err || n > w->cap - w->pos) { w->err = true; return; }
  gx_memcpy(w->p + w->pos, src, n);
  w->pos += n;
}
GX_FN void wr_u8(Writer *w, u8 v) { wr_bytes(w, &v, 1); }
GX_FN void wr_u16(Writer *w, u16 v) { wr_bytes(w, &v, 2); }
GX_FN void wr_u32(Writer *w, u32 v) { wr_bytes(w, &v, 4); }
GX_FN void wr_u64(Writer *w, u64 v) { wr_bytes(w, &v, 8); }
GX_FN void wr_i64(Writer *w, i64 v) { wr_bytes(w, &v, 8); }
GX_FN void wr_bool(Writer *w, bool v) { wr_u8(w, v ? 1 : 0); }
GX_FN void wr_pubkey(Writer *w, const Pubkey *k) { wr_bytes(w, k->x, 32); }
GX_FN void wr_string(Writer *w, const u8 *s, u32 n) { wr_u32(w, n); wr_bytes(w, s, n); }
GX_FN void wr_option(Writer *w, bool some) { wr_u8(w, some ? 1 : 0); }

/* ---- checked arithmetic, 128-bit helpers ---- */
/* Full 64x64 -> 128 multiply from 32-bit halves (no __int128 helpers on this target). */
GX_FN void gx_mul_64x64(u64 a, u64 b, u128 *out) {
  u64 al = a & 0xffffffff, ah = a >> 32, bl = b & 0xffffffff, bh = b >> 32;
  u64 ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  u64 mid = (ll >> 32) + (lh & 0xffffffff) + (hl & 0xffffffff);
  out->lo = (ll & 0xffffffff) | (mid << 32);
  out->hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

GX_FN bool gx_add_overflows(u64 a, u64 b, u64 *out) { *out = a + b; return *out < a; }
GX_FN bool gx_mul_overflows(u64 a, u64 b, u64 *out) {
  u128 p;
  gx_mul_64x64(a, b, &p);
  *out = p.lo;
  return p.hi != 0;
}
GX_FN u64 gx_sat_sub(u64 a, u64 b) { return a > b ? a - b : 0; }

/* n / d for a 128-bit n; returns false when d is 0 or the quotient does not fit in 64 bits. */
GX_FN bool gx_div_128_64(const u128 *n, u64 d, u64 *q) {
  if (d == 0 || n->hi >= d) return false;
  u64 rem = n->hi, quot = 0;
  for (int i = 63; i >= 0; i--) {
    u64 top = rem >> 63;
    rem = (rem << 1) | ((n->lo >> i) & 1);
    quot <<= 1;
    if (top || rem >= d) { rem -= d; quot |= 1; }
  }
  *q = quot;
  return true;
}

/* ---- account checks ---- */
GX_FN u64 gx_signer(const AccountInfo *a) { return a->is_signer ? 0 : ERR_ACCOUNT_NOT_SIGNER; }
GX_FN u64 gx_writable(const AccountInfo *a) { return a->is_writable ? 0 : ERR_CONSTRAINT_MUT; }
GX_FN u64 gx_address(const AccountInfo *a, const Pubkey *k) {
  return pubkey_eq(a->key, k) ? 0 : ERR_CONSTRAINT_ADDRESS;
}
GX_FN u64 gx_sysvar(const AccountInfo *a, const Pubkey *k) {
  return pubkey_eq(a->key, k) ? 0 : ERR_ACCOUNT_SYSVAR_MISMATCH;
}
GX_FN u64 gx_program(const AccountInfo *a, const Pubkey *k) {
  if (!pubkey_eq(a->key, k)) return ERR_INVALID_PROGRAM_ID;
  return a->executable ? 0 : ERR_INVALID_PROGRAM_EXECUTABLE;
}
GX_FN u64 gx_owned_by(const AccountInfo *a, const Pubkey *owner) {
  if (pubkey_eq(a->owner, &SYSTEM_PROGRAM_ID) && *a->lamports == 0) return ERR_ACCOUNT_NOT_INITIALIZED;
  return pubkey_eq(a->owner, owner) ? 0 : ERR_ACCOUNT_OWNED_BY_WRONG_PROGRAM;
}
/* Anchor Account<T>: owner, then the 8-byte discriminator, then enough bytes for T. */
GX_FN u64 gx_account(const AccountInfo *a, const Pubkey *owner, u64 disc, u64 min_size) {
  TRY(gx_owned_by(a, owner));
  if (a->data_len < 8) return ERR_ACCOUNT_DISCRIMINATOR_NOT_FOUND;
  if (*(const u64 *)a->data != disc) return ERR_ACCOUNT_DISCRIMINATOR_MISMATCH;
  return a->data_len < min_size ? ERR_ACCOUNT_DID_NOT_DESERIALIZE : 0;
}

/* ---- PDAs ---- */
GX_FN u64 gx_find_pda(const Seed *seeds, u64 n, const Pubkey *program, Pubkey *out, u8 *bump) {
  return sol_try_find_program_address(seeds, n, program, out, bump);
}
GX_FN u64 gx_check_pda(const AccountInfo *a, const Seed *seeds, u64 n, const Pubkey *program, u8 *bump) {
  Pubkey k;
  if (gx_find_pda(seeds, n, program, &k, bump) || !pubkey_eq(&k, a->key)) return ERR_CONSTRAINT_SEEDS;
  return 0;
}
GX_FN u64 gx_ata_address(const Pubkey *wallet, const Pubkey *token_program, const Pubkey *mint, Pubkey *out) {
  Seed s[3] = {SEED_KEY(wallet), SEED_KEY(token_program), SEED_KEY(mint)};
  u8 bump;
  return gx_find_pda(s, 3, &ATA_PROGRAM_ID, out, &bump);
}

/* ---- sysvars ---- */
GX_FN i64 gx_unix_timestamp(void) {
  u64 clock[5]; /* slot, epoch_start_timestamp, epoch, leader_schedule_epoch, unix_timestamp */
  sol_get_clock_sysvar(clock);
  return (i64)clock[4];
}

/* Rent-exempt minimum: (128 + space) * lamports_per_byte_year * exemption_threshold, with the
 * f64 threshold decoded from its IEEE-754 bits (no floating point on this target). */
GX_FN u64 gx_rent_exempt(u64 space) {
  u64 rent[3]; /* lamports_per_byte_year, exemption_threshold (f64 bits), burn_percent */
  sol_get_rent_sysvar(rent);
  u64 base = (128 + space) * rent[0];
  u64 bits = rent[1];
  i64 exp = (i64)((bits >> 52) & 0x7ff);
  if (exp == 0) return 0;
  u64 mant = (bits & 0xfffffffffffffUL) | (1UL << 52);
  i64 shift = exp - 1023 - 52;
  u128 prod;
  gx_mul_64x64(base, mant, &prod);
  if (shift >= 0) return shift > 63 ? ~0UL : prod.lo << shift;
  u64 s = (u64)(-shift);
  if (s >= 128) return 0;
  if (s >= 64) return prod.hi >> (s - 64);
  return (prod.lo >> s) | (s ? prod.hi << (64 - s) : 0);
}

/* ---- CPI ---- */
GX_FN u64 gx_invoke(const Instruction *ix, const AccountInfo *infos, int n, const SignerSeeds *signer) {
  return sol_invoke_signed_c(ix, infos, n, signer, signer ? 1 : 0);
}

GX_FN u64 gx_system_call(const u8 *data, u64 len, const AccountInfo *a, const AccountInfo *b,
                         const SignerSeeds *signer) {
  AccountMeta m[2] = {{a->key, true, true}, {b ? b->key : NULL, true, true}};
  if (b && !signer) m[1].is_signer = b->is_signer;
  AccountInfo infos[2] = {*a, b ? *b : *a};
  Instruction ix = {&SYSTEM_PROGRAM_ID, m, b ? 2 : 1, data, len};
  return gx_invoke(&ix, infos, b ? 2 : 1, signer);
}

/* Create `target` (a PDA signed by `signer`, or a keypair account that signed the transaction when
 * `signer` is NULL) with `space` bytes owned by `owner`, funded rent-exempt by `payer`. */
GX_FN u64 gx_create_account(const AccountInfo *payer, AccountInfo *target, u64 space,
                            const Pubkey *owner, const SignerSeeds *signer) {
  /* Anchor's guard: the payer's own (funded, signing) account would otherwise be taken over. */
  if (pubkey_eq(payer->key, target->key)) return ERR_TRYING_TO_INIT_PAYER_AS_PROGRAM_ACCOUNT;
  u64 need = gx_rent_exempt(space);
  u8 d[52];
  if (*target->lamports == 0) {
    *(u32 *)d = 0;
    *(u64 *)(d + 4) = need;
    *(u64 *)(d + 12) = space;
    gx_memcpy(d + 20, owner->x, 32);
    TRY(gx_system_call(d, 52, payer, target, signer));
  } else {
    if (need > *target->lamports) {
      AccountMeta m[2] = {{payer->key, true, true}, {target->key, true, false}};
      AccountInfo infos[2] = {*payer, *target};
      *(u32 *)d = 2;
      *(u64 *)(d + 4) = need - *target->lamports;
      Instruction ix = {&SYSTEM_PROGRAM_ID, m, 2, d, 12};
      TRY(gx_invoke(&ix, infos, 2, NULL));
    }
    *(u32 *)d = 8;
    *(u64 *)(d + 4) = space;
    TRY(gx_system_call(d, 12, target, NULL, signer));
    /* The next CPI passes `target` again: its data_len must be the allocated one, or the runtime
     * sees this program (not the owner) changing the size. */
    gx_refresh(target);
    *(u32 *)d = 1;
    gx_memcpy(d + 4, owner->x, 32);
    TRY(gx_system_call(d, 36, target, NULL, signer));
  }
  gx_refresh(target);
  return 0;
}

/* Anchor `init` of a PDA. `seeds` has room for n + 1 entries: the bump seed is appended. */
typedef struct {
  const Pubkey *program; /* derives the address */
  const Pubkey *owner;   /* owns the new account */
  u64 space;
  Seed *seeds;
  u64 n;
  u8 bump; /* set by gx_init_pda */
} PdaInit;

/* Checks the canonical PDA (2006), target and payer writable (2000), payer signer (3010), then
 * creates the account rent-exempt, signed with the seeds + bump. */
GX_FN u64 gx_init_pda(AccountInfo *target, const AccountInfo *payer, PdaInit *init) {
  TRY(gx_check_pda(target, init->seeds, init->n, init->program, &init->bump));
  TRY(gx_writable(target));
  TRY(gx_writable(payer));
  TRY(gx_signer(payer));
  init->seeds[init->n] = SEED_BYTES(&init->bump, 1);
  SignerSeeds signer = {init->seeds, init->n + 1};
  return gx_create_account(payer, target, init->space, init->owner, &signer);
}

typedef struct { const Pubkey *program; const SignerSeeds *signer; } CpiCtx;

GX_FN u64 gx_token_call(const CpiCtx *c, const u8 *data, u64 len, const AccountInfo **accs, u64 n) {
  AccountMeta m[3];
  AccountInfo infos[3];
  for (u64 i = 0; i < n; i++) {
    bool last = i == n - 1 && n > 1;
    m[i].pubkey = accs[i]->key;
    m[i].is_writable = !last;
    m[i].is_signer = last;
    infos[i] = *accs[i];
  }
  Instruction ix = {c->program, m, n, data, len};
  return gx_invoke(&ix, infos, (int)n, c->signer);
}

/* SPL Token InitializeMint2 (no rent sysvar account needed). */
GX_FN u64 gx_token_initialize_mint2(const CpiCtx *c, const AccountInfo *mint, u8 decimals,
                                    const Pubkey *authority, const Pubkey *freeze) {
  u8 d[67];
  d[0] = 20;
  d[1] = decimals;
  gx_memcpy(d + 2, authority->x, 32);
  d[34] = freeze ? 1 : 0;
  gx_memset(d + 35, 0, 32);
  if (freeze) gx_memcpy(d + 35, freeze->x, 32);
  const AccountInfo *a[1] = {mint};
  return gx_token_call(c, d, 67, a, 1);
}

GX_FN u64 gx_token_amount_op(const CpiCtx *c, u8 op, u64 amount, const AccountInfo *x,
                             const AccountInfo *y_and_auth[2]) {
  u8 d[9];
  d[0] = op;
  *(u64 *)(d + 1) = amount;
  const AccountInfo *a[3] = {x, y_and_auth[0], y_and_auth[1]};
  return gx_token_call(c, d, 9, a, 3);
}
/* MintTo: mint (w), destination (w), mint authority (s). */
GX_FN u64 gx_token_mint_to(const CpiCtx *c, const AccountInfo *mint, const AccountInfo *dest,
                           const AccountInfo *authority, u64 amount) {
  const AccountInfo *rest[2] = {dest, authority};
  return gx_token_amount_op(c, 7, amount, mint, rest);
}
/* Transfer: source (w), destination (w), owner (s). */
GX_FN u64 gx_token_transfer(const CpiCtx *c, const AccountInfo *from, const AccountInfo *to,
                            const AccountInfo *authority, u64 amount) {
  const AccountInfo *rest[2] = {to, authority};
  return gx_token_amount_op(c, 3, amount, from, rest);
}
/* Burn: account (w), mint (w), owner (s). */
GX_FN u64 gx_token_burn(const CpiCtx *c, const AccountInfo *account, const AccountInfo *mint,
                        const AccountInfo *authority, u64 amount) {
  const AccountInfo *rest[2] = {mint, authority};
  return gx_token_amount_op(c, 8, amount, account, rest);
}

/* TransferChecked: source (w), mint, destination (w), owner or approved delegate (s); the token
 * program checks the mint and decimals, so a transfer cannot silently use another mint. */
GX_FN u64 gx_token_transfer_checked(const CpiCtx *c, const AccountInfo *const accs[4], u64 amount,
                                    u8 decimals) {
  static const bool w[4] = {true, false, true, false};
  AccountMeta m[4];
  AccountInfo infos[4];
  for (int i = 0; i < 4; i++) {
    m[i].pubkey = accs[i]->key;
    m[i].is_writable = w[i];
    m[i].is_signer = i == 3;
    infos[i] = *accs[i];
  }
  u8 d[10];
  d[0] = 12;
  *(u64 *)(d + 1) = amount;
  d[9] = decimals;
  Instruction ix = {c->program, m, 4, d, 10};
  return gx_invoke(&ix, infos, 4, c->signer);
}

/* Associated Token Account program Create: payer (w,s), ata (w), wallet, mint, system, token. */
GX_FN u64 gx_ata_create(const AccountInfo *ata_program, AccountInfo *const accs[6]) {
  AccountMeta m[6];
  AccountInfo infos[6];
  static const bool w[6] = {true, true, false, false, false, false};
  for (int i = 0; i < 6; i++) {
    m[i].pubkey = accs[i]->key;
    m[i].is_writable = w[i];
    m[i].is_signer = i == 0;
    infos[i] = *accs[i];
  }
  u8 d[1] = {0};
  Instruction ix = {ata_program->key, m, 6, d, 1};
  TRY(gx_invoke(&ix, infos, 6, NULL));
  gx_refresh(accs[1]);
  return 0;
}

/* ---- events, return data ---- */
GX_FN void gx_emit(const u8 *buf, u64 len) {
  Bytes b = {buf, len};
  sol_log_data(&b, 1);
}
/* Events are assembled on the heap (32 KiB, zeroed per invocation), so strings of any length the
 * instruction data can carry fit without using stack. */
#define GX_HEAP ((u8 *)0x300000000UL)
#define GX_HEAP_SIZE 32768
GX_FN void gx_event_begin(Writer *w, u64 disc) { wr_init(w, GX_HEAP, GX_HEAP_SIZE); wr_u64(w, disc); }
GX_FN void gx_event_end(const Writer *w) { if (!w->err) gx_emit(w->p, w->pos); }
GX_FN void gx_set_return_data(const void *p, u64 n) { sol_set_return_data((const u8 *)p, n); }
GX_FN u64 gx_get_return_data(void *p, u64 n, Pubkey *program) {
  return sol_get_return_data((u8 *)p, n, program);
}
