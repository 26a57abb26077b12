// Chinese names of the labels the service sends (DESIGN §2 label sets).

export const INTENT = {
  presale_product: "售前咨询",
  price_promotion: "价格优惠",
  logistics: "物流",
  order_change: "改单",
  return_exchange: "退换货",
  refund: "退款",
  usage_howto: "使用方法",
  product_defect: "质量问题",
  repair_warranty: "维修保修",
  invoice: "发票",
  complaint: "投诉",
  account_membership: "账户会员",
  greeting_thanks: "问候致谢",
  other: "其他",
};

export const SENTIMENT = { negative: "负面", neutral: "中性", positive: "正面" };

export const EMOTION = { anger: "愤怒", anxiety: "焦虑", disappointment: "失望", satisfaction: "满意", none: "" };

export const STAGE = {
  opening: "开场",
  identifying: "识别问题",
  solving: "处理中",
  resolved: "已解决",
  closing: "结束",
};

export const ACTION = {
  answer: "解答",
  clarify: "澄清",
  escalate: "升级",
  quality_report: "质量上报",
  recovery: "补偿",
  care: "关怀",
  cross_sell: "推荐",
  qa_alert: "质检",
};

export const STATUS = { accepted: "已采纳", edited: "已编辑采纳", dismissed: "已忽略", shown: "" };

export const TIER = { normal: "普通会员", vip: "VIP", svip: "SVIP" };

export const CONNECTION = {
  idle: "未连接",
  connecting: "连接中…",
  syncing: "同步中…",
  open: "已连接",
  reconnecting: "重连中…",
  auth: "需要令牌",
};

export const ORDER_EVENT = {
  paid: "已付款",
  shipped: "已发货",
  delivered: "已签收",
  delayed: "物流延迟",
  cancelled: "已取消",
  refunded: "已退款",
  exception: "物流异常",
};
