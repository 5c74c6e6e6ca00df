/*
 * imap-parser.h - IMAP4rev1 client commands (RFC 3501 9, with LITERAL+/-
 * of RFC 7888): raw bytes in, one command at a time out, as a generic
 * argument tree (tag, name, atoms / quoted strings / literals / NIL /
 * lists, like Dovecot's imap-arg), plus typed helpers over that tree.
 *
 * The parser makes no system calls and keeps no clock. It is fed the
 * octets the client sent and stops at every event the session must act
 * on, having consumed exactly the octets up to that event (never past the
 * LF of a complete command: after STARTTLS the caller purges the rest).
 *
 * Guarantees:
 * - A command (its lines and the literals it buffers) never exceeds the
 *   budget: PB_IMAP_PARSER_MAX_PRE_AUTH (8 KiB) until
 *   pb_imap_parser_set_authenticated(), PB_IMAP_PARSER_MAX_COMMAND
 *   (64 KiB) after. A literal's announced size is checked in
 *   pb_imap_parser_literal_accept(), before the caller sends "+".
 *   Literals the caller streams (APPEND's message) are not buffered and
 *   not counted: the caller bounds them (max_message_size).
 * - A non-synchronising literal ({N+}) over the budget makes the
 *   parser close (PB_IMAP_PARSE_CLOSE): its octets are already on their
 *   way and are never read as commands. One within the budget that the
 *   caller refuses (APPEND to a missing folder) is read and discarded,
 *   so the session goes on (RFC 7888 4). Before
 *   authentication a {N+} larger than 4096 octets is over the budget
 *   (LITERAL-, RFC 7888 5). So is a {N+} ending a line skipped after
 *   an error when N is over the budget (skipping it would take long).
 * - List nesting is bounded (PB_IMAP_PARSER_MAX_DEPTH); NUL is refused
 *   everywhere; a quoted string may hold 8-bit octets (clients send UTF-8
 *   in SEARCH), never CR or LF.
 * - After a syntax error the rest of the line is skipped (a {N+} literal
 *   at the end of a skipped line is skipped with it; a {N} one is not
 *   waited for, the client gets no "+"), so the session stays in step.
 * - Sequence sets are kept as ranges and never expanded; SEARCH programs
 *   are trees of bounded depth; the LIST matcher is an NFA walk, no regex.
 *
 * Leniencies: a bare LF ends a line like CRLF; empty lines between
 * commands are ignored; runs of spaces and trailing spaces are taken;
 * an atom may hold 8-bit octets (the typed helpers refuse them where
 * the grammar does).
 *
 * What it does not do: the meaning of commands (imap-server), mailbox
 * name validation beyond INBOX's case (mailfolder), BINARY (~{N} is
 * read as a literal flagged literal8; nothing else of RFC 3516).
 */
#ifndef PB_IMAP_PARSER_H
#define PB_IMAP_PARSER_H

#include <glib.h>

#define PB_IMAP_PARSER_MAX_PRE_AUTH 8192
#define PB_IMAP_PARSER_MAX_COMMAND 65536
#define PB_IMAP_PARSER_MAX_LITERAL_MINUS 4096
#define PB_IMAP_PARSER_MAX_DEPTH 32     /* nested parenthesised lists */
#define PB_IMAP_SEARCH_MAX_DEPTH 64     /* nested OR / NOT / groups */
#define PB_IMAP_FETCH_MAX_PART_DEPTH 32 /* BODY[1.2.3...] */

/* ------------------------------------------------------------------ */
/* The argument tree */

typedef enum {
	PB_IMAP_ARG_ATOM,    /* also "\Seen", "1:*", "BODY[HEADER]<0.10>" */
	PB_IMAP_ARG_QUOTED,  /* "..." with \" and \\ undone */
	PB_IMAP_ARG_LITERAL, /* {N} / {N+} / ~{N}, buffered */
	PB_IMAP_ARG_NIL,     /* the atom NIL, any case */
	PB_IMAP_ARG_LIST,    /* ( ... ) */
	PB_IMAP_ARG_STREAM,  /* a literal the caller took as a stream: only
	                        its size (len) is known here */
} PbImapArgType;

typedef struct _PbImapArg PbImapArg;
struct _PbImapArg {
	PbImapArgType type;
	gboolean literal8; /* LITERAL or STREAM announced as ~{N} */
	/* ATOM, QUOTED, LITERAL: LEN octets, NUL-terminated (no NUL
	 * inside: refused). NIL: as sent ("nil"). LIST, STREAM: NULL. */
	char *str;
	gsize len;       /* STREAM: the literal's size */
	PbImapArg *list; /* LIST: N children */
	guint n;
};

/* An atom: a bare word, brackets included: "BODY[HEADER.FIELDS (A B)]"
 * is ONE atom when the word before '[' is BODY or BODY.PEEK (the FETCH
 * helper parses the section); anywhere else '[' is an ordinary atom
 * character (mailbox names like "[Gmail].Sent"). A section holds no
 * literal (header field names quoted or bare only: BAD otherwise).
 * "%", "*", "\" and "]"
 * are atom characters here (list-mailbox, flags); the typed helpers are
 * strict where the grammar is. */

typedef struct {
	char *tag;       /* never NULL in a complete command */
	char *name;      /* the first word as sent (compare case-insensitively);
	                    "UID FETCH" arrives as name "UID", args[0] "FETCH" */
	PbImapArg *args; /* top level, n_args of them */
	guint n_args;
	gsize size; /* octets read for it, buffered literals included */
} PbImapCommand;

/* ------------------------------------------------------------------ */
/* The parser */

typedef enum {
	PB_IMAP_PARSE_MORE,    /* all input consumed: feed more */
	PB_IMAP_PARSE_COMMAND, /* pb_imap_parser_command() is complete */
	PB_IMAP_PARSE_LITERAL, /* a literal is announced ("{N}\r\n" consumed):
	                          see pb_imap_parser_literal(); answer with
	                          exactly one of _accept/_stream/_refuse
	                          before feeding again */
	PB_IMAP_PARSE_STREAM,  /* BUF[0 .. *consumed) are octets of the
	                          streamed literal, for the caller's sink */
	PB_IMAP_PARSE_STREAM_END, /* the streamed literal is complete
	                             (nothing consumed); feed on: the rest of
	                             the command follows */
	PB_IMAP_PARSE_LINE,       /* the raw line asked for with
	                             pb_imap_parser_expect_line() */
	PB_IMAP_PARSE_BAD,        /* a bad command: answer "TAG BAD <error>" or
	                             "* BAD <error>" when the tag is NULL; the
	                             parser skips the rest by itself */
	PB_IMAP_PARSE_CLOSE, /* cannot stay in step: "* BYE <error>", close.
	                        Sticky. */
} PbImapParseResult;

typedef enum {
	PB_IMAP_BAD_SYNTAX,
	PB_IMAP_BAD_TOO_BIG, /* the line went over the budget */
	PB_IMAP_BAD_DEPTH,   /* lists nested too deep */
} PbImapBadKind;

typedef enum {
	PB_IMAP_LITERAL_SEND_PLUS, /* synchronising {N}: write "+ OK\r\n",
	                              flush, feed on */
	PB_IMAP_LITERAL_FEED,      /* non-synchronising {N+}: feed on */
	PB_IMAP_LITERAL_REFUSED,   /* {N} refused (or over the budget), or a
	                              refused {N+} the parser discards:
	                              answer the tag (NO or BAD); the
	                              parser waits for the next command */
	PB_IMAP_LITERAL_CLOSE,     /* {N+} over the budget (or over the bound
	                              given to _skip): "* BYE" and close
	                              (PB_IMAP_PARSE_CLOSE from now) */
} PbImapLiteralReply;

typedef struct _PbImapParser PbImapParser;

PbImapParser *pb_imap_parser_new(void);
void pb_imap_parser_free(PbImapParser *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbImapParser, pb_imap_parser_free)

/* The budget: 8 KiB before login, 64 KiB once AUTHENTICATED is TRUE.
 * Applies from the next command on. */
void pb_imap_parser_set_authenticated(PbImapParser *p, gboolean authenticated);
/* Any other budget (at least 1024 octets). */
void pb_imap_parser_set_max_command(PbImapParser *p, gsize max);

/* Reads from BUF (LEN octets) up to the next event; *CONSUMED gets how
 * many octets were used (the caller keeps the rest and feeds it again
 * after acting). Never consumes past a complete command's LF. */
PbImapParseResult pb_imap_parser_feed(PbImapParser *p, const char *buf,
                                      gsize len, gsize *consumed);

/* After COMMAND: the command, owned by the parser, valid until the next
 * feed. After LITERAL: the command so far (tag, name and the top-level
 * arguments complete before the literal). NULL before a tag is read. */
const PbImapCommand *pb_imap_parser_command(PbImapParser *p);

/* After BAD: the tag if one was read (else NULL), the message, its kind. */
const char *pb_imap_parser_tag(PbImapParser *p);
const char *pb_imap_parser_error(PbImapParser *p);
PbImapBadKind pb_imap_parser_bad_kind(PbImapParser *p);

/* After LITERAL: its size, whether it is synchronising ({N}), whether it
 * is a literal8 (~{N}), and how deep in lists it sits (0: a top-level
 * argument, e.g. APPEND's message). */
void pb_imap_parser_literal(PbImapParser *p, guint64 *size, gboolean *sync,
                            gboolean *literal8, guint *depth);
/* Buffer it into the tree, if the budget allows. */
PbImapLiteralReply pb_imap_parser_literal_accept(PbImapParser *p);
/* Hand its octets to the caller (PB_IMAP_PARSE_STREAM events, then one
 * STREAM_END); the tree gets a PB_IMAP_ARG_STREAM. The caller has
 * checked the size against its own bound. Returns SEND_PLUS or FEED.
 * The caller must let all N octets pass through feed even if its sink
 * failed (they are not commands). The command is complete only at
 * COMMAND: a BAD after STREAM_END (e.g. junk after the literal) means
 * the command failed, and what was streamed is to be thrown away. */
PbImapLiteralReply pb_imap_parser_literal_stream(PbImapParser *p);
/* Refuse it (the command cannot be done, e.g. APPEND to a folder that
 * does not exist): REFUSED or CLOSE. The partial command is dropped
 * (pb_imap_parser_command() is NULL); pb_imap_parser_tag() keeps its tag
 * for the answer. A {N} is simply not invited. A {N+} (RFC 7888 4) of
 * at most the command budget (4096 octets before login) is REFUSED
 * too: its octets and the rest of its line are read and discarded,
 * never buffered, never taken as commands; the caller answers the tag
 * at once. A larger {N+} gives CLOSE. (accept refuses by itself when the
 * budget is exceeded: a {N+} over it gives CLOSE.) */
PbImapLiteralReply pb_imap_parser_literal_refuse(PbImapParser *p);
/* The same with MAX instead of the command budget as the largest {N+}
 * discarded (APPEND: max_message_size, G_MAXUINT32 for no limit). */
PbImapLiteralReply pb_imap_parser_literal_skip(PbImapParser *p, guint64 max);
/* Octets of the streamed literal still to come. */
guint64 pb_imap_parser_stream_left(PbImapParser *p);

/* The next line is not a command but raw text (AUTHENTICATE's response,
 * IDLE's DONE): the next event is LINE (or BAD when it is over the budget
 * or holds a NUL). */
void pb_imap_parser_expect_line(PbImapParser *p);
/* After LINE: the line without its CRLF, NUL-terminated. */
const char *pb_imap_parser_line(PbImapParser *p, gsize *len);

/* ------------------------------------------------------------------ */
/* Typed helpers over the tree. They return FALSE with a PB_ERROR_DATA
 * GError whose message fits after "TAG BAD ". */

/* TRUE if ARG is an atom equal to WORD, ignoring ASCII case. */
gboolean pb_imap_arg_is_atom(const PbImapArg *arg, const char *word);
/* atom / quoted / literal (astring); quoted / literal (string);
 * string or NIL (nstring: *S = NULL for NIL). S borrows ARG. */
gboolean pb_imap_arg_astring(const PbImapArg *arg, const char **s, gsize *len);
gboolean pb_imap_arg_string(const PbImapArg *arg, const char **s, gsize *len);
gboolean pb_imap_arg_nstring(const PbImapArg *arg, const char **s, gsize *len);
/* A mailbox name (astring): "INBOX" in any case becomes "INBOX", and so
 * does the first level of "inbox.x" (Dovecot does the same); the rest
 * is returned as sent (modified UTF-7: mailfolder validates). */
gboolean pb_imap_arg_mailbox(const PbImapArg *arg, char **name, GError **error);

/* ----- sequence sets: ranges, never expanded ----- */

/* One range LO:HI as sent; 0 stands for "*". LO <= HI is not implied. */
typedef struct {
	guint32 lo;
	guint32 hi;
} PbImapRange;

typedef struct {
	PbImapRange *ranges;
	guint n;
} PbImapSeqSet;

void pb_imap_seqset_free(PbImapSeqSet *set);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbImapSeqSet, pb_imap_seqset_free)

/* sequence-set (RFC 3501 9) from the atom ARG or a string. */
gboolean pb_imap_arg_seqset(const PbImapArg *arg, PbImapSeqSet **set,
                            GError **error);
PbImapSeqSet *pb_imap_seqset_parse(const char *s, gsize len, GError **error);
/* The highest number written in SET ("*" not counted; 0 if none): the
 * session answers BAD for message numbers above the mailbox's count. */
guint32 pb_imap_seqset_max(const PbImapSeqSet *set);
/* SET with "*" = MAX, each range ordered, clamped to 1..MAX, sorted and
 * merged (RFC 3501: "5:*" with MAX 3 is 3:5, so 3 is in it). Empty when
 * MAX is 0. O(n log n) in the ranges written, whatever their span. */
PbImapSeqSet *pb_imap_seqset_resolve(const PbImapSeqSet *set, guint32 max);
/* On a resolved set: membership (binary search) and the count. */
gboolean pb_imap_seqset_contains(const PbImapSeqSet *resolved, guint32 n);
guint64 pb_imap_seqset_count(const PbImapSeqSet *resolved);

/* Walks a resolved set number by number, ascending. For UID sets, walk
 * the folder's UIDs and test membership instead (or walk the ranges). */
typedef struct {
	const PbImapSeqSet *set;
	guint i;
	guint64 next;
} PbImapSeqIter;
void pb_imap_seqset_iter_init(PbImapSeqIter *it, const PbImapSeqSet *resolved);
gboolean pb_imap_seqset_iter_next(PbImapSeqIter *it, guint32 *n);

/* ----- flags ----- */

enum {
	PB_IMAP_FLAG_SEEN = 1 << 0,
	PB_IMAP_FLAG_ANSWERED = 1 << 1,
	PB_IMAP_FLAG_FLAGGED = 1 << 2,
	PB_IMAP_FLAG_DELETED = 1 << 3,
	PB_IMAP_FLAG_DRAFT = 1 << 4,
	PB_IMAP_FLAG_RECENT = 1 << 5, /* never storable: the session refuses */
};

typedef struct {
	guint system;        /* PB_IMAP_FLAG_* */
	GPtrArray *keywords; /* char *, as sent (atoms), no duplicates
	                        (ASCII case ignored); NULL when none */
} PbImapFlags;

void pb_imap_flags_clear(PbImapFlags *flags);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(PbImapFlags, pb_imap_flags_clear)

/* ARGS/N are flags, each an atom (a list's children, or STORE's bare
 * "\Seen \Deleted"). Unknown system flags (\Foo) and keywords with
 * atom-specials or 8-bit octets are refused. FLAGS is filled (clear it). */
gboolean pb_imap_args_flags(const PbImapArg *args, guint n, PbImapFlags *flags,
                            GError **error);
/* A flag list "(\Seen $Forwarded)": ARG must be a LIST (may be empty). */
gboolean pb_imap_arg_flag_list(const PbImapArg *arg, PbImapFlags *flags,
                               GError **error);
/* A single keyword's syntax (atom, no atom-specials, not "\..."). */
gboolean pb_imap_keyword_valid(const char *s, gsize len);

/* STORE's item and value (the arguments after the set):
 * [+|-]FLAGS[.SILENT] followed by a flag list or bare flags. */
typedef enum {
	PB_IMAP_STORE_SET,
	PB_IMAP_STORE_ADD,
	PB_IMAP_STORE_REMOVE,
} PbImapStoreMode;

typedef struct {
	PbImapStoreMode mode;
	gboolean silent;
	PbImapFlags flags;
} PbImapStore;

gboolean pb_imap_args_store(const PbImapArg *args, guint n, PbImapStore *store,
                            GError **error);
void pb_imap_store_clear(PbImapStore *store);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(PbImapStore, pb_imap_store_clear)

/* ----- dates (RFC 3501 9: date, date-time) ----- */

typedef struct {
	guint year;  /* 1..9999 */
	guint month; /* 1..12 */
	guint day;   /* 1..31, valid for the month */
} PbImapDate;

/* date: "d-Mon-yyyy" or "dd-Mon-yyyy", as an atom or quoted. */
gboolean pb_imap_arg_date(const PbImapArg *arg, PbImapDate *date,
                          GError **error);
gboolean pb_imap_parse_date(const char *s, gsize len, PbImapDate *date);
/* Days since 1970-01-01 (negative before). */
gint64 pb_imap_date_days(const PbImapDate *date);
/* date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" (quoted; a space-padded day
 * allowed). *UTC gets seconds since the epoch, *ZONE the offset in
 * minutes east (either may be NULL). */
gboolean pb_imap_arg_date_time(const PbImapArg *arg, gint64 *utc, int *zone,
                               GError **error);
gboolean pb_imap_parse_date_time(const char *s, gsize len, gint64 *utc,
                                 int *zone);

/* ----- FETCH attributes ----- */

enum {
	PB_IMAP_FETCH_FLAGS = 1 << 0,
	PB_IMAP_FETCH_UID = 1 << 1,
	PB_IMAP_FETCH_INTERNALDATE = 1 << 2,
	PB_IMAP_FETCH_RFC822_SIZE = 1 << 3,
	PB_IMAP_FETCH_ENVELOPE = 1 << 4,
	PB_IMAP_FETCH_BODY = 1 << 5, /* BODY (the structure) */
	PB_IMAP_FETCH_BODYSTRUCTURE = 1 << 6,
};

typedef enum {
	PB_IMAP_SECTION_WHOLE, /* BODY[] or BODY[1.2]: the (part's) body */
	PB_IMAP_SECTION_HEADER,
	PB_IMAP_SECTION_HEADER_FIELDS,
	PB_IMAP_SECTION_HEADER_FIELDS_NOT,
	PB_IMAP_SECTION_TEXT,
	PB_IMAP_SECTION_MIME, /* only after a part number */
} PbImapSectionKind;

typedef struct {
	/* What the response calls it: "BODY[1.HEADER.FIELDS (FROM TO)]<0>"
	 * (field names upper-cased and quoted where the client quoted
	 * them, as Dovecot answers; a partial's offset only), "RFC822",
	 * "RFC822.HEADER", "RFC822.TEXT". */
	char *name;
	guint32 *part; /* "1.2.3": {1, 2, 3}; NULL when n_part is 0 */
	guint n_part;
	PbImapSectionKind kind;
	char **fields; /* HEADER.FIELDS (.NOT): NULL-terminated, upper case */
	gboolean peek; /* does not set \Seen (BODY.PEEK, RFC822.HEADER) */
	gboolean partial; /* <offset.length> given */
	guint32 offset;
	guint32 length;
} PbImapFetchBody;

typedef struct {
	guint items;             /* PB_IMAP_FETCH_* */
	PbImapFetchBody *bodies; /* in the order asked */
	guint n_bodies;
} PbImapFetch;

void pb_imap_fetch_free(PbImapFetch *fetch);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbImapFetch, pb_imap_fetch_free)

/* FETCH's attribute argument: ALL, FAST, FULL, one attribute, or a list
 * of attributes. (UID FETCH adds PB_IMAP_FETCH_UID itself.) */
gboolean pb_imap_arg_fetch(const PbImapArg *arg, PbImapFetch **fetch,
                           GError **error);

/* ----- SEARCH ----- */

typedef enum {
	PB_IMAP_SKEY_ALL,
	PB_IMAP_SKEY_AND,    /* children: all of them (a group of two or more
	                        keys, the program, NEW) */
	PB_IMAP_SKEY_OR,     /* children[0] or children[1] */
	PB_IMAP_SKEY_NOT,    /* children[0]; UNSEEN is NOT SEEN, OLD NOT RECENT,
	                        UNKEYWORD k NOT KEYWORD k, NEW is AND(RECENT,
	                        NOT SEEN) */
	PB_IMAP_SKEY_SEQSET, /* set: message numbers */
	PB_IMAP_SKEY_UID,    /* set: UIDs */
	PB_IMAP_SKEY_ANSWERED,
	PB_IMAP_SKEY_DELETED,
	PB_IMAP_SKEY_DRAFT,
	PB_IMAP_SKEY_FLAGGED,
	PB_IMAP_SKEY_SEEN,
	PB_IMAP_SKEY_RECENT,
	PB_IMAP_SKEY_KEYWORD, /* str */
	PB_IMAP_SKEY_HEADER,  /* field (upper case), str; BCC CC FROM SUBJECT
	                         TO come as HEADER with that field */
	PB_IMAP_SKEY_BODY,    /* str */
	PB_IMAP_SKEY_TEXT,    /* str */
	PB_IMAP_SKEY_BEFORE,  /* date: internal date */
	PB_IMAP_SKEY_ON,
	PB_IMAP_SKEY_SINCE,
	PB_IMAP_SKEY_SENTBEFORE, /* date: the Date: header */
	PB_IMAP_SKEY_SENTON,
	PB_IMAP_SKEY_SENTSINCE,
	PB_IMAP_SKEY_LARGER, /* number: RFC822.SIZE */
	PB_IMAP_SKEY_SMALLER,
} PbImapSearchKeyType;

typedef struct _PbImapSearchKey PbImapSearchKey;
struct _PbImapSearchKey {
	PbImapSearchKeyType type;
	char *field; /* HEADER */
	char *str;   /* HEADER BODY TEXT KEYWORD (may be empty) */
	gsize len;
	PbImapDate date;
	guint64 number;
	PbImapSeqSet *set; /* SEQSET, UID: as sent (resolve it) */
	PbImapSearchKey **children;
	guint n_children;
};

enum {
	PB_IMAP_SEARCH_RETURN_MIN = 1 << 0,
	PB_IMAP_SEARCH_RETURN_MAX = 1 << 1,
	PB_IMAP_SEARCH_RETURN_ALL = 1 << 2,
	PB_IMAP_SEARCH_RETURN_COUNT = 1 << 3,
};

typedef struct {
	gboolean esearch;      /* RETURN (...) given: answer with ESEARCH */
	guint ret;             /* PB_IMAP_SEARCH_RETURN_*; "RETURN ()" is ALL */
	char *charset;         /* as sent, NULL if none (the session answers
	                          NO [BADCHARSET] unless UTF-8 or US-ASCII) */
	PbImapSearchKey *root; /* the program: its one key, or an AND */
} PbImapSearch;

void pb_imap_search_free(PbImapSearch *search);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbImapSearch, pb_imap_search_free)

/* SEARCH's arguments (after the command name, or after "UID SEARCH"). */
gboolean pb_imap_args_search(const PbImapArg *args, guint n,
                             PbImapSearch **search, GError **error);

/* ----- LIST / LSUB / STATUS ----- */

enum {
	PB_IMAP_STATUS_MESSAGES = 1 << 0,
	PB_IMAP_STATUS_RECENT = 1 << 1,
	PB_IMAP_STATUS_UIDNEXT = 1 << 2,
	PB_IMAP_STATUS_UIDVALIDITY = 1 << 3,
	PB_IMAP_STATUS_UNSEEN = 1 << 4,
	PB_IMAP_STATUS_SIZE = 1 << 5, /* RFC 8438 */
};

/* STATUS's item list "(MESSAGES UNSEEN)" (at least one item). */
gboolean pb_imap_arg_status_items(const PbImapArg *arg, guint *items,
                                  GError **error);

enum {
	PB_IMAP_LIST_SEL_SUBSCRIBED = 1 << 0,
	PB_IMAP_LIST_SEL_REMOTE = 1 << 1,
	PB_IMAP_LIST_SEL_RECURSIVEMATCH = 1 << 2,
	PB_IMAP_LIST_SEL_SPECIAL_USE = 1 << 3,
};

enum {
	PB_IMAP_LIST_RET_SUBSCRIBED = 1 << 0,
	PB_IMAP_LIST_RET_CHILDREN = 1 << 1,
	PB_IMAP_LIST_RET_SPECIAL_USE = 1 << 2,
	PB_IMAP_LIST_RET_STATUS = 1 << 3, /* status_items says which */
};

typedef struct {
	guint select;       /* PB_IMAP_LIST_SEL_* */
	guint ret;          /* PB_IMAP_LIST_RET_* */
	guint status_items; /* PB_IMAP_STATUS_* when RET_STATUS */
	char *reference;
	char **patterns;   /* NULL-terminated, at least one */
	gboolean extended; /* options or a pattern list given: RFC 5258 */
} PbImapList;

void pb_imap_list_free(PbImapList *list);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbImapList, pb_imap_list_free)

/* LIST's arguments: [(selection)] reference pattern|(patterns)
 * [RETURN (options)]. LSUB: the same, the session refuses options. */
gboolean pb_imap_args_list(const PbImapArg *args, guint n, PbImapList **list,
                           GError **error);

/* TRUE if NAME matches PATTERN: "*" matches anything, "%" anything but
 * SEP; other octets literally, except that a leading "INBOX" of NAME
 * (NAME is INBOX or starts INBOX + SEP) matches in any case. An NFA
 * walk, no backtracking: time O(len(PATTERN) + len(NAME)^2), so a 64 KiB
 * pattern costs little more than reading it. */
gboolean pb_imap_list_match(const char *pattern, const char *name, char sep);
/* TRUE if some name below NAME could match (for \HasChildren with
 * RECURSIVEMATCH, and to skip subtrees): PATTERN matches NAME + SEP + x
 * for some x. */
gboolean pb_imap_list_match_below(const char *pattern, const char *name,
                                  char sep);

/* ----- APPEND ----- */

/* APPEND's optional arguments before a message literal: [flag-list]
 * [date-time]. ARGS/N are those between the mailbox (or the previous
 * message) and the literal. *HAS_DATE tells whether a date was given. */
gboolean pb_imap_args_append(const PbImapArg *args, guint n, PbImapFlags *flags,
                             gboolean *has_date, gint64 *date, GError **error);

/* ----- output ----- */

/* Appends S (LEN octets) to OUT as a quoted string, or as a literal
 * {N}\r\n... when it holds CR, LF, NUL, 8-bit octets or is long. */
void pb_imap_append_string(GString *out, const char *s, gsize len);
/* As an atom when it is one (and not NIL), else as pb_imap_append_string. */
void pb_imap_append_astring(GString *out, const char *s, gsize len);
/* NIL for NULL, else pb_imap_append_string. */
void pb_imap_append_nstring(GString *out, const char *s, gsize len);

#endif
