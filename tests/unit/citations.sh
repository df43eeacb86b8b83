#!/bin/bash
# tests/unit/citations.sh: every citation in the repository points into it.
#
# Fails, naming file and line, when a file of the repository
#   - cites a document that is not in the repository: the project's notes outside
#     it (the DOMAIN, NOTES, ARCHITECTURE or STYLE pages, anything in the shared
#     directory beside the checkout) or a tracker's issue by number ("issue" or
#     "issues", then a number);
#   - cites docs/<name>.md and there is no such file;
#   - cites a section, docs/<name>.md "Heading" (several: "A", "B"), or an
#     anchor, docs/<name>.md#heading, that is not a heading of that file.
# A citation may run over several lines of a comment: line breaks and comment
# leaders (*, //, #, --, ;) are read as one blank.
#
# The files: those git tracks plus new ones it does not ignore; outside a git
# checkout, every file but the build and cache directories. Binary files are
# skipped. Run by tests/run unit (a script counts as one test).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        mapfile -d '' FILES < <(git ls-files -z --cached --others --exclude-standard)
else
        mapfile -d '' FILES < <(find . -path ./.git -prune -o -path './build*' -prune -o -path ./.cache -prune \
                -o -type f -printf '%P\0')
fi
# Deleted but still in the index: nothing to read.
EXISTING=()
for f in "${FILES[@]}"; do
        [[ -f $f ]] && EXISTING+=("$f")
done
((${#EXISTING[@]} > 0)) || { echo "citations: no files found under $ROOT" >&2; exit 2; }

printf '%s\0' "${EXISTING[@]}" | perl -0 -e '
use strict;
use warnings;

my @files = map { s/\0\z//r } <STDIN>;
my $bad = 0;
my %headings;           # docs file -> { heading text => 1, anchor => 1 }

sub report { my ($file, $line, $msg) = @_; print "$file:$line: $msg\n"; $bad++; }

sub slurp {
        my ($file) = @_;
        open(my $fh, "<", $file) or return undef;
        local $/;
        my $text = <$fh>;
        close $fh;
        return $text;
}

# The headings of a Markdown file, and their GitHub anchors.
sub headings_of {
        my ($doc) = @_;
        return $headings{$doc} if exists $headings{$doc};
        my $text = slurp($doc);
        my %h;
        if (defined $text) {
                my $fence = 0;
                for my $l (split /\n/, $text) {
                        $fence = !$fence if $l =~ /^\s*```/;
                        next if $fence;
                        next unless $l =~ /^#{1,6}\s+(.*?)\s*#*\s*$/;
                        my $t = $1;
                        $h{"\"$t\""} = 1;
                        (my $slug = lc $t) =~ s/[^\w\- ]//g;
                        $slug =~ s/ /-/g;
                        $h{"#$slug"} = 1;
                }
        }
        return $headings{$doc} = (defined $text ? \%h : undef);
}

# Spelled so that this script does not match itself.
my $outside = qr{\b(?:DOMAIN|NOTES|ARCHITECTURE|STYLE)[.]md\b|[.][.]/shared\b|\b[Ii]ssues?\s+\#?[0-9]};

# A migration once applied cannot change (daemon/store.c refuses a file whose
# sha256 differs from the one recorded), so its old comments stay as they are.
# Each exception is one whole line; docs/ holds what it meant.
my %immutable = (
        "schemas/001_initial.sql" =>
                [ "-- A case is opened by every decision that is not NOT_ELIGIBLE (DOMAIN" . ".md)." ],
);

for my $file (@files) {
        next if -B $file;
        my $text = slurp($file);
        next unless defined $text;
        my @lines = split /\n/, $text, -1;

        my %keep = map { $_ => 1 } @{ $immutable{$file} // [] };
        for my $i (0 .. $#lines) {
                next if $keep{ $lines[$i] };
                while ($lines[$i] =~ /($outside)/g) {
                        report($file, $i + 1, "cites \"$1\", which is not in the repository: cite docs/ instead");
                }
        }

        # One line of text with each line break and comment leader read as a
        # blank; $start[i] is where line i begins in it.
        my ($flat, @start) = ("");
        for my $i (0 .. $#lines) {
                my $l = $lines[$i];
                $l =~ s{^\s*(?:\*|//|\#+|--|;)?\s*}{} if $i > 0;
                push @start, length($flat) + ($i > 0 ? 1 : 0);
                $flat .= ($i > 0 ? " " : "") . $l;
        }
        my $line_at = sub {
                my ($pos) = @_;
                my $n = 0;
                $n++ while $n + 1 < @start && $start[$n + 1] <= $pos;
                return $n + 1;
        };

        while ($flat =~ m{(?<![\w/.\-])docs/([\w.\-]+?\.md)(\#[\w\-]+)?((?:\s+"[^"]{1,100}")(?:\s*,\s*"[^"]{1,100}")*)?}g) {
                my ($doc, $anchor, $sections, $pos) = ("docs/$1", $2, $3, $-[0]);
                my $line = $line_at->($pos);
                my $h = headings_of($doc);
                if (!defined $h) {
                        report($file, $line, "cites $doc, which does not exist");
                        next;
                }
                if (defined $anchor && !$h->{$anchor}) {
                        report($file, $line, "cites $doc$anchor: no such heading in $doc");
                }
                next unless defined $sections;
                for my $s ($sections =~ /("[^"]+")/g) {
                        report($file, $line, "cites $doc $s: no such heading in $doc") unless $h->{$s};
                }
        }
}

print "citations: ", scalar(@files), " files read, $bad bad citation(s)\n";
exit($bad ? 1 : 0);
'
