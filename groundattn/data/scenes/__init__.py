"""Grounded scenes: the embedded default data set, written in the published formats.

Coloured shapes on a plain background, rendered deterministically, described by
five captions with grounded phrases, phrase pairs labelled from what they state,
questions answered by ten simulated people and referring expressions with a
simulated detector. The files are those of the real data sets, so the same
readers serve both::

    <out_dir>/
      card.md, card.json              counts per split (card.json last: marks completion)
      images/<image_id>.jpg           128 × 128 JPEG
      Sentences/<image_id>.txt        5 captions, Flickr30k Entities markup
      Annotations/<image_id>.xml      boxes per object (XML object order = scene order)
      train.txt val.txt test.txt      image ids
      vgp/<split>.csv                 image, original_phrase1, original_phrase2, phrase1, phrase2, type_label
      vqa/v2_OpenEnded_<split>_questions.json, vqa/v2_<split>_annotations.json
      refcoco+/refs(unc).p            refs of splits train, val, testA, testB (pickle protocol 4,
                                      plain types; file_name "<image_id>_<ref_id>.jpg" as refer's)
      refcoco+/instances.json         COCO: images, annotations (bbox x y w h), categories = shapes
      refcoco+/detections.json        simulated detector: image_id, box (x y w h), category_id, score
      features/<split>.h5             FeatureStore: whole image, ground truth, detections
      features/<split>_boxes.json     per image: store row → object index, ann_id, chain ids
      world.jsonl                     structured truth per image (objects, phrases' attributes,
                                      VGP pairs kept, question queries, refs, detections)

Ids: image ids are ``100001 + index``; chain ids ``100 * index + local`` (see
:mod:`.captions`); COCO annotation ids ``10 * image_id + object index``; VQA
question ids ``1000 * image_id + k``. Image splits: 80/10/10 drawn separately among
single-shape and mixed scenes; refer splits: :func:`.refer.refer_split`.
"""

from groundattn.data.scenes.prepare import SIZES, prepare_scenes

__all__ = ["SIZES", "prepare_scenes"]
