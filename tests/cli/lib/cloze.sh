# A tiny story-cloze folder for demo tests (sourced, not run): short synthetic items in the format
# of data/cloze (the real files are long passages; sanitizer builds would take minutes on them),
# plus the head of the real validation stories the demo reads the model's read-outs from.
# tiny_cloze DIR: writes DIR/{train,validation,test,ood-tinyshakespeare,ood-wikitext2}.jsonl and
# DIR/validation-stories.txt.
tiny_cloze_gen() {   # $1 file, $2 items, $3 id prefix
    i=0
    while [ $i -lt "$2" ]; do
        case $((i % 5)) in 0) a=cat;; 1) a=dog;; 2) a=bird;; 3) a=fox;; *) a=frog;; esac
        case $((i % 3)) in 0) b=ball;; 1) b=box;; *) b=tree;; esac
        printf '{"id": "%s-%d", "question": "Once upon a time, a little %s found a red %s. It was %d days old.", "choices": ["The %s was very happy.", "They went to the park.", "It began to rain hard.", "Mom made a big cake."], "answer": %d}\n' \
            "$3" $i $a $b $i $a $((i % 4)) >>"$1"
        i=$((i + 1))
    done
}
tiny_cloze() {
    mkdir -p "$1"
    tiny_cloze_gen "$1/train.jsonl" 8 tr; tiny_cloze_gen "$1/validation.jsonl" 4 va; tiny_cloze_gen "$1/test.jsonl" 6 te
    tiny_cloze_gen "$1/ood-tinyshakespeare.jsonl" 4 o1; tiny_cloze_gen "$1/ood-wikitext2.jsonl" 4 o2
    head -c 6000 data/cloze/validation-stories.txt >"$1/validation-stories.txt"
}
