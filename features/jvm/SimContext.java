package simguard.features;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.streaming.MapState;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;

import scala.jdk.javaapi.CollectionConverters;

/**
 * The cross-SIM context of each event out, keyed by a cell or an IMEI ("cell|C0001"): the SIMs
 * that called there per cohort bucket (an hour), each with the sub-bucket it was first seen in,
 * kept by Spark's state store ({@code MapState} of bucket to its members). Every input row gets
 * the number of SIMs first seen there in its cohort bucket by the end of its own sub-bucket (the
 * {@code with_context} of features/sim_rows.py, per event). Rows of kind "none" (events in, and
 * events out with neither cell nor IMEI) pass with no count. Buckets older than the window before
 * the newest one are dropped when the key is next seen.
 *
 * <p>A SIM seen there later in a sub-bucket already read (a late record, or a micro-batch that
 * ended inside the minute) raises the count of the events other SIMs had there from then on: for
 * each such (SIM, sub-bucket) a correction row goes out with the new count ({@link #CORRECTION}),
 * which {@code SimFeatures} applies to the events it keeps.
 */
public final class SimContext extends StatefulProcessor<String, Row, SimContext.Event> {
  private static final long serialVersionUID = 1L;
  /** Input and output columns, in order. */
  static final int ENTITY = 0, T = 1, FLAGS = 2, PARTY = 3, DIGITS = 4, DURATION = 5, CAUSE = 6, CELL = 7, IMEI = 8,
      EID = 9, KIND = 10, KEY = 11;
  /** The flag of a correction row: the new count of a SIM's events in a sub-bucket (no event). */
  static final int CORRECTION = 4096;
  private final long subS, cohortS, keepS;
  private transient MapState<Long, Members> buckets;

  SimContext(long subS, long cohortS, long keepS) {
    this.subS = subS;
    this.cohortS = cohortS;
    this.keepS = keepS;
  }

  /** The SIMs of a cohort bucket, the sub-bucket each was first seen in, and every (SIM,
   * sub-bucket) that had an event there (whose count a later SIM can raise). */
  public static class Members implements Serializable {
    private static final long serialVersionUID = 1L;
    private List<String> entities = new ArrayList<>();
    private List<Long> seen = new ArrayList<>();
    private List<String> pairEntities = new ArrayList<>();
    private List<Long> pairSubs = new ArrayList<>();

    public List<String> getEntities() { return entities; }
    public void setEntities(List<String> v) { entities = v; }
    public List<Long> getSeen() { return seen; }
    public void setSeen(List<Long> v) { seen = v; }
    public List<String> getPairEntities() { return pairEntities; }
    public void setPairEntities(List<String> v) { pairEntities = v; }
    public List<Long> getPairSubs() { return pairSubs; }
    public void setPairSubs(List<Long> v) { pairSubs = v; }
  }

  @Override
  public void init(OutputMode outputMode, TimeMode timeMode) {
    buckets = getHandle().getMapState("members", Encoders.LONG(), Encoders.bean(Members.class), TTLConfig.NONE());
  }

  @Override
  public scala.collection.Iterator<Event> handleInputRows(String key, scala.collection.Iterator<Row> rows,
                                                          TimerValues timerValues) {
    List<Event> out = new ArrayList<>();
    if (key.startsWith("none|")) {
      while (rows.hasNext()) {
        out.add(new Event(rows.next(), null));
      }
      return CollectionConverters.asScala(out.iterator());
    }
    TreeMap<Long, List<Row>> byBucket = new TreeMap<>();
    while (rows.hasNext()) {
      Row r = rows.next();
      byBucket.computeIfAbsent(Math.floorDiv((long) Math.floor(r.getDouble(T)), cohortS) * cohortS,
                               k -> new ArrayList<>()).add(r);
    }
    String kind = key.substring(0, key.indexOf('|'));
    String value = key.substring(key.indexOf('|') + 1);
    for (Map.Entry<Long, List<Row>> e : byBucket.entrySet()) {
      Members stored = buckets.exists() ? buckets.getValue(e.getKey()) : null;
      Map<String, Long> seen = new HashMap<>();
      Set<Pair> pairs = new LinkedHashSet<>();
      if (stored != null) {
        for (int i = 0; i < stored.entities.size(); i++) {
          seen.put(stored.entities.get(i), stored.seen.get(i));
        }
        for (int i = 0; i < stored.pairEntities.size(); i++) {
          pairs.add(new Pair(stored.pairEntities.get(i), stored.pairSubs.get(i)));
        }
      }
      long[] before = sortedValues(seen);
      for (Row r : e.getValue()) {
        seen.merge(r.getString(ENTITY), sub(r), Math::min);
      }
      long[] sorted = sortedValues(seen);
      for (Pair p : pairs) {
        int now = upTo(sorted, p.sub);
        if (now != upTo(before, p.sub)) {
          out.add(Event.correction(p.entity, p.sub, kind, value, now));
        }
      }
      for (Row r : e.getValue()) {
        out.add(new Event(r, upTo(sorted, sub(r))));
        pairs.add(new Pair(r.getString(ENTITY), sub(r)));
      }
      Members members = new Members();
      for (Map.Entry<String, Long> m : seen.entrySet()) {
        members.entities.add(m.getKey());
        members.seen.add(m.getValue());
      }
      for (Pair p : pairs) {
        members.pairEntities.add(p.entity);
        members.pairSubs.add(p.sub);
      }
      buckets.updateValue(e.getKey(), members);
    }
    long keepFrom = byBucket.lastKey() - keepS;
    List<Long> old = new ArrayList<>();
    for (java.util.Iterator<Long> it = CollectionConverters.asJava(buckets.keys()); it.hasNext();) {
      long bucket = it.next();
      if (bucket < keepFrom) {
        old.add(bucket);
      }
    }
    old.forEach(buckets::removeKey);
    return CollectionConverters.asScala(out.iterator());
  }

  private record Pair(String entity, long sub) {}

  private static long[] sortedValues(Map<String, Long> seen) {
    return seen.values().stream().mapToLong(Long::longValue).sorted().toArray();
  }

  private long sub(Row r) {
    return (long) Math.floor(r.getDouble(T) / subS) * subS;
  }

  /** How many of the sorted values are at most {@code v}. */
  static int upTo(long[] sorted, long v) {
    int i = Arrays.binarySearch(sorted, v);
    if (i < 0) {
      return -i - 1;
    }
    while (i + 1 < sorted.length && sorted[i + 1] == v) {
      i++;
    }
    return i + 1;
  }

  /** An input row with its count (null for kind "none"). */
  public static class Event implements Serializable {
    private static final long serialVersionUID = 1L;
    private String entity;
    private double t;
    private int flags;
    private String party;
    private Long digits;
    private Double duration;
    private String cause;
    private String cell;
    private String imei;
    private String eid;
    private String kind;
    private Integer count;

    public Event() {}

    Event(Row r, Integer count) {
      entity = r.getString(ENTITY);
      t = r.getDouble(T);
      flags = r.getInt(FLAGS);
      party = r.isNullAt(PARTY) ? null : r.getString(PARTY);
      digits = r.isNullAt(DIGITS) ? null : r.getLong(DIGITS);
      duration = r.isNullAt(DURATION) ? null : r.getDouble(DURATION);
      cause = r.isNullAt(CAUSE) ? null : r.getString(CAUSE);
      cell = r.isNullAt(CELL) ? null : r.getString(CELL);
      imei = r.isNullAt(IMEI) ? null : r.getString(IMEI);
      eid = r.getString(EID);
      kind = r.getString(KIND);
      this.count = count;
    }

    /** The new count of ``entity``'s events of ``kind`` at ``value`` in the sub-bucket ``sub``. */
    static Event correction(String entity, long sub, String kind, String value, int count) {
      Event e = new Event();
      e.entity = entity;
      e.t = sub;
      e.flags = CORRECTION;
      e.kind = kind;
      if ("cell".equals(kind)) {
        e.cell = value;
      } else {
        e.imei = value;
      }
      e.count = count;
      return e;
    }

    public String getEntity() { return entity; }
    public void setEntity(String v) { entity = v; }
    public double getT() { return t; }
    public void setT(double v) { t = v; }
    public int getFlags() { return flags; }
    public void setFlags(int v) { flags = v; }
    public String getParty() { return party; }
    public void setParty(String v) { party = v; }
    public Long getDigits() { return digits; }
    public void setDigits(Long v) { digits = v; }
    public Double getDuration() { return duration; }
    public void setDuration(Double v) { duration = v; }
    public String getCause() { return cause; }
    public void setCause(String v) { cause = v; }
    public String getCell() { return cell; }
    public void setCell(String v) { cell = v; }
    public String getImei() { return imei; }
    public void setImei(String v) { imei = v; }
    public String getEid() { return eid; }
    public void setEid(String v) { eid = v; }
    public String getKind() { return kind; }
    public void setKind(String v) { kind = v; }
    public Integer getCount() { return count; }
    public void setCount(Integer v) { count = v; }
  }
}
