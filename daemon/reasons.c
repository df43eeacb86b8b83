/* Stable codes of reasons and flags, with plain explanations for social workers.
 * The codes are stored and published: never rename one. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "reasons.h"
#include "rules.h"

const reason_text reason_texts[] = {
        {REASON_IDENTITY_INVALID, "IDENTITY_INVALID",
         "Personnumret eller samordningsnumret är felaktigt (fel kontrollsiffra eller ett datum som inte finns) "
         "och ingen födelsedag anges. Kontrollera uppgiften med polisen och bedöm ärendet manuellt.",
         "The personal identity number is wrong (a bad check digit or a date that does not exist) and no birth "
         "date is given. Check it with the police and assess the referral by hand."},
        {REASON_AGE_UNKNOWN, "AGE_UNKNOWN",
         "Anmälan saknar både personnummer och födelsedag, så barnets ålder är okänd. Bedöm ärendet manuellt.",
         "The referral has neither an identity number nor a birth date, so the child's age is unknown. Assess "
         "the referral by hand."},
        {REASON_IDENTITY_MISMATCH, "IDENTITY_MISMATCH",
         "Personnumret och den angivna födelsedagen stämmer inte överens. Ta reda på vem anmälan gäller innan "
         "något annat görs.",
         "The identity number and the birth date given do not agree. Find out who the referral is about before "
         "anything else is done."},
        {REASON_BELOW_MIN_AGE, "BELOW_MIN_AGE",
         "Barnet är yngre än den lägsta åldern för allvarssamtal i den här modellen.",
         "The child is younger than the lowest age for a conversation under this model."},
        {REASON_ABOVE_MAX_AGE, "ABOVE_MAX_AGE",
         "Personen är äldre än den högsta åldern för allvarssamtal i den här modellen.",
         "The person is older than the highest age for a conversation under this model."},
        {REASON_NO_QUALIFYING_CONCERN, "NO_QUALIFYING_CONCERN",
         "Oron i anmälan är inte av det slag som modellen gäller (till exempel saknas misstanke om brott).",
         "The concern in the referral is not of the kind this model covers (for example, no crime is "
         "suspected)."},
        {REASON_NOT_FIRST_SUSPICION, "NOT_FIRST_SUSPICION",
         "Personen har redan tidigare anmälts för samma slags oro. Modellen gäller bara första gången.",
         "The person has been referred before for the same kind of concern. The model only applies the first "
         "time."},
        {REASON_NOT_IMPRISONABLE, "NOT_IMPRISONABLE",
         "Det misstänkta brottet har inte fängelse i straffskalan, vilket krävs för allvarssamtal enligt "
         "DS 2024:30.",
         "The suspected offence cannot be punished by imprisonment, which DS 2024:30 requires for a "
         "conversation."},
        {REASON_PROTECTIVE_ASSESSMENT_FIRST, "PROTECTIVE_ASSESSMENT_FIRST",
         "Anmälan tyder på våld eller allvarlig risk. Gör först en skyddsbedömning; samtalet planeras när den är "
         "klar.",
         "The referral points to violence or a grave risk. Make a protective assessment first; the conversation "
         "is planned once it is done."},
        {REASON_PRELIMINARY_INVESTIGATION, "PRELIMINARY_INVESTIGATION",
         "En förundersökning pågår. Polisen eller åklagaren måste ge klartecken innan samtalet hålls "
         "(LUL 31 §).",
         "A preliminary investigation is under way. The police or prosecutor must give clearance before the "
         "conversation is held (LUL section 31)."},
        {0, NULL, NULL, NULL},
};

const reason_text flag_texts[] = {
        {FLAG_CONTACT_MISSING, "CONTACT_MISSING",
         "Inget telefonnummer till vårdnadshavarna finns i anmälan. Polisen tillfrågas om kontaktuppgifter; "
         "kallelsen kan behöva skickas med brev.",
         "The referral has no phone number for the guardians. The police are asked for contact details; the "
         "invitation may have to go by letter."},
        {FLAG_LATE_REFERRAL, "LATE_REFERRAL",
         "Anmälan kom långt efter händelsen. Den snabba reaktion som modellen bygger på går inte längre att få.",
         "The referral came long after the incident. The quick reaction the model aims at is no longer "
         "possible."},
        {FLAG_UNDER_15, "UNDER_15",
         "Barnet är under 15 år och kan inte straffas. Reglerna i LUL om utredningar av barn gäller.",
         "The child is under 15, the age of criminal responsibility. The LUL rules for investigations of "
         "children apply."},
        {FLAG_REPEAT_REFERRAL, "REPEAT_REFERRAL",
         "Samma person har anmälts tidigare. Se historiken.",
         "The same person has been referred before. See the history."},
        {FLAG_DEADLINE_PASSED_ON_ARRIVAL, "DEADLINE_PASSED_ON_ARRIVAL",
         "Tidsgränsen hade redan passerat när anmälan behandlades. En varning skickas direkt.",
         "The time limit had already passed when the referral was processed. An alert is raised at once."},
        {0, NULL, NULL, NULL},
};

size_t reasons_format(const reason_text *table, uint32_t bits, char *buf, size_t size) {
        size_t at = 0;
        if (size > 0)
                buf[0] = '\0';
        for (const reason_text *t = table; t->code; t++) {
                if (!(bits & t->bit))
                        continue;
                at += (size_t)snprintf(at < size ? buf + at : NULL, at < size ? size - at : 0, "%s%s",
                                       at > 0 ? "," : "", t->code);
        }
        return at;
}

const reason_text *reasons_lookup(const reason_text *table, const char *code) {
        if (!code)
                return NULL;
        for (const reason_text *t = table; t->code; t++)
                if (strcmp(t->code, code) == 0)
                        return t;
        return NULL;
}

int reasons_parse(const reason_text *table, const char *list, uint32_t *ret) {
        uint32_t bits = 0;
        if (!list)
                return -EINVAL;
        const char *p = list;
        while (*p) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t)(comma - p) : strlen(p);
                const reason_text *found = NULL;
                for (const reason_text *t = table; t->code; t++)
                        if (strlen(t->code) == len && memcmp(t->code, p, len) == 0) {
                                found = t;
                                break;
                        }
                if (!found)
                        return -EINVAL;         /* also an empty item: "A,,B" or a trailing comma */
                bits |= found->bit;
                if (!comma)
                        break;
                p = comma + 1;
                if (!*p)
                        return -EINVAL;
        }
        *ret = bits;
        return 0;
}
