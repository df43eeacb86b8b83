/* A case's guardians and the merge of supplied contact details (contacts.h). */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "contacts.h"

void contacts_free(contacts *c) {
        for (size_t i = 0; i < c->n; i++) {
                free(c->v[i].name);
                free(c->v[i].phone);
                free(c->v[i].email);
                free(c->v[i].address);
        }
        free(c->v);
        free(c->g);
        free(c->gp);
        *c = (contacts){ 0 };
}

static char *dup_or_empty(const char *s) {
        return strdup(s ? s : "");
}

int contacts_add(contacts *c, int32_t ordinal, const char *name, const char *phone, const char *email,
                 const char *address, usec_t at, bool dirty) {
        if (c->n == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 4;
                contact *v = realloc(c->v, cap * sizeof *v);
                if (!v)
                        return -ENOMEM;
                c->v = v;
                c->cap = cap;
        }
        contact *k = &c->v[c->n];
        *k = (contact){ .ordinal = ordinal, .supplied_at = at, .dirty = dirty };
        k->name = dup_or_empty(name);
        k->phone = dup_or_empty(phone);
        k->email = dup_or_empty(email);
        k->address = dup_or_empty(address);
        c->n++;
        if (!k->name || !k->phone || !k->email || !k->address)
                return -ENOMEM;
        return 0;
}

static int32_t next_ordinal(const contacts *c) {
        int32_t o = 0;
        for (size_t i = 0; i < c->n; i++)
                if (c->v[i].ordinal > o)
                        o = c->v[i].ordinal;
        return o + 1;
}

/* Trimmed, ASCII-case-insensitive equality of two non-empty names. */
static bool same_name(const char *a, const char *b) {
        while (isspace((unsigned char)*a))
                a++;
        while (isspace((unsigned char)*b))
                b++;
        size_t la = strlen(a), lb = strlen(b);
        while (la > 0 && isspace((unsigned char)a[la - 1]))
                la--;
        while (lb > 0 && isspace((unsigned char)b[lb - 1]))
                lb--;
        return la > 0 && la == lb && strncasecmp(a, b, la) == 0;
}

/* Replace a field with a supplied non-empty value; *changed when it changed. */
static int field_update(char **field, const char *value, bool *changed) {
        if (!value || !*value || strcmp(*field, value) == 0)
                return 0;
        char *v = strdup(value);
        if (!v)
                return -ENOMEM;
        free(*field);
        *field = v;
        *changed = true;
        return 0;
}

static bool blank(const char *s) {
        if (!s)
                return true;
        while (isspace((unsigned char)*s))
                s++;
        return !*s;
}

/* Without a name to go by: the same phone number or e-mail address. */
static bool same_contact(const contact *k, const Allvarssamtal__V1__Guardian *g) {
        return blank(k->name) && ((!blank(g->phone) && strcmp(k->phone, g->phone) == 0) ||
                                  (!blank(g->email) && strcmp(k->email, g->email) == 0));
}

int contacts_merge(contacts *c, Allvarssamtal__V1__Guardian *const *g, size_t n, usec_t at) {
        assert(c && (n == 0 || g));
        int dropped = 0;
        for (size_t i = 0; i < n; i++) {
                if (!g[i] || (blank(g[i]->name) && blank(g[i]->phone) && blank(g[i]->email) &&
                              blank(g[i]->postal_address)))
                        continue;       /* nothing to contact */
                contact *match = NULL;
                for (size_t j = 0; j < c->n && !match; j++)
                        if ((g[i]->name && same_name(c->v[j].name, g[i]->name)) ||
                            (blank(g[i]->name) && same_contact(&c->v[j], g[i])))
                                match = &c->v[j];
                int r;
                if (!match) {
                        if (c->n >= CONTACTS_MAX) {
                                dropped++;      /* a case's scheduling request stays a few kB */
                                continue;
                        }
                        r = contacts_add(c, next_ordinal(c), g[i]->name, g[i]->phone, g[i]->email,
                                         g[i]->postal_address, at, true);
                        if (r < 0)
                                return r;
                        continue;
                }
                bool changed = false;
                if ((r = field_update(&match->phone, g[i]->phone, &changed)) < 0 ||
                    (r = field_update(&match->email, g[i]->email, &changed)) < 0 ||
                    (r = field_update(&match->address, g[i]->postal_address, &changed)) < 0)
                        return r;
                if (changed) {
                        match->dirty = true;
                        match->supplied_at = at;
                }
        }
        return dropped;
}

int contacts_views(contacts *c) {
        free(c->g);
        free(c->gp);
        c->g = calloc(c->n ? c->n : 1, sizeof *c->g);
        c->gp = calloc(c->n ? c->n : 1, sizeof *c->gp);
        if (!c->g || !c->gp)
                return -ENOMEM;
        for (size_t i = 0; i < c->n; i++) {
                allvarssamtal__v1__guardian__init(&c->g[i]);
                c->g[i].name = c->v[i].name;
                c->g[i].phone = c->v[i].phone;
                c->g[i].email = c->v[i].email;
                c->g[i].postal_address = c->v[i].address;
                c->gp[i] = &c->g[i];
        }
        return 0;
}
