/* A case's guardians and the merge of supplied contact details (PERSONAL:
 * names, phone numbers, e-mail and postal addresses; never logged). Pure: no I/O.
 *
 * The rule of the merge: a supplied guardian whose name matches a known one
 * (trimmed, ASCII case ignored) updates that guardian's non-empty fields; the
 * others are appended with the next ordinals. Nothing is deleted: the police
 * may name one parent only (docs/domain.md "After the decision: the case"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "codec.h"

typedef struct contact {
        int32_t ordinal;                /* 1, 2, ... as stored in case_contacts */
        char *name, *phone, *email, *address;
        usec_t supplied_at;             /* 0: unknown (written as now) */
        bool dirty;                     /* to be written */
} contact;

typedef struct contacts {
        contact *v;
        size_t n, cap;
        bool loaded;
        Allvarssamtal__V1__Guardian *g;  /* views for the scheduling request (contacts_views) */
        Allvarssamtal__V1__Guardian **gp;
} contacts;

void contacts_free(contacts *c);
/* Append one (NULL fields are ""); -ENOMEM. */
int contacts_add(contacts *c, int32_t ordinal, const char *name, const char *phone, const char *email,
                 const char *address, usec_t at, bool dirty);
/* At most this many guardians per case: no family has more, and the
 * scheduling request carrying them must stay far below the brokers' message
 * size (about 19 supplies of 32 guardians each made it too large to send). */
#define CONTACTS_MAX 8

/* Merge the supplied guardians at time `at` (the rule above). A guardian
 * without a name matches a nameless known one with the same phone number or
 * e-mail address; one with nothing to contact is skipped; new ones beyond
 * CONTACTS_MAX are dropped. Returns how many were dropped, or -ENOMEM. */
int contacts_merge(contacts *c, Allvarssamtal__V1__Guardian *const *g, size_t n, usec_t at);
/* Protobuf views of the contacts in c->gp[0..n), for events_scheduling; -ENOMEM. */
int contacts_views(contacts *c);
