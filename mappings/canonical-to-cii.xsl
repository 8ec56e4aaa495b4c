<?xml version="1.0" encoding="UTF-8"?>
<!--
  Canonical invoice (schemas/canonical-invoice.xsd) → UN/CEFACT CII D16B
  CrossIndustryInvoice, Chorus Pro interface FSO1106A (IN_DP_E1_CII_16B).

  Element order follows the CII D16B XSD sequences; an optional canonical element that
  is absent produces no CII element. Amounts arrive computed and rounded: this
  stylesheet copies them and does no arithmetic. Dates are written as
  udt:DateTimeString format="102" (YYYYMMDD).

  Where Chorus Pro reads its data (../shared/DOMAIN.md §3): SIRETs as GlobalID and
  SpecifiedLegalOrganization/ID with schemeID 0009 (the CII places of BT-29/BT-46 and
  BT-30/BT-47, as the UBL mapping fills PartyIdentification and PartyLegalEntity),
  service code in BuyerReference (BT-10), commitment number in
  BuyerOrderReferencedDocument/IssuerAssignedID (BT-13), cadre de facturation in
  BusinessProcessSpecifiedDocumentContextParameter/ID (BT-23).
-->
<xsl:stylesheet version="3.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:c="urn:chorus-gateway:canonical-invoice:1"
    xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
    xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
    xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
    xmlns:qdt="urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
    xpath-default-namespace="urn:chorus-gateway:canonical-invoice:1"
    exclude-result-prefixes="xs c">

  <!-- Not indented: the whitespace between elements was a quarter of a document's bytes
       and half of its nodes, which every parser and the Schematron then hold
       (benchmarks/bench_big_invoice.py); an XML viewer or `xmllint` indents it. -->
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <!-- The Chorus Pro rendering stylesheet of the interface (E1 flows carry it). -->
  <xsl:param name="interface-code" as="xs:string" select="'FSO1106A'"/>
  <!-- EN 16931 core specification identifier (BT-24). -->
  <xsl:param name="customization-id" as="xs:string" select="'urn:cen.eu:en16931:2017'"/>

  <xsl:variable name="currency" select="/Invoice/CurrencyCode"/>

  <xsl:template match="/">
    <xsl:processing-instruction name="xml-stylesheet"
        select="concat('type=&quot;text/xsl&quot; href=&quot;', $interface-code, '.xsl&quot;')"/>
    <xsl:apply-templates select="Invoice"/>
  </xsl:template>

  <xsl:template match="Invoice">
    <rsm:CrossIndustryInvoice>
      <rsm:ExchangedDocumentContext>
        <xsl:apply-templates select="BusinessProcessType"/>
        <ram:GuidelineSpecifiedDocumentContextParameter>
          <ram:ID><xsl:value-of select="$customization-id"/></ram:ID>
        </ram:GuidelineSpecifiedDocumentContextParameter>
      </rsm:ExchangedDocumentContext>
      <rsm:ExchangedDocument>
        <ram:ID><xsl:value-of select="InvoiceNumber"/></ram:ID>
        <ram:TypeCode><xsl:value-of select="InvoiceTypeCode"/></ram:TypeCode>
        <ram:IssueDateTime><xsl:call-template name="date-102"><xsl:with-param name="date" select="IssueDate"/></xsl:call-template></ram:IssueDateTime>
      </rsm:ExchangedDocument>
      <rsm:SupplyChainTradeTransaction>
        <xsl:apply-templates select="InvoiceLine"/>
        <ram:ApplicableHeaderTradeAgreement>
          <xsl:apply-templates select="BuyerReference"/>
          <ram:SellerTradeParty><xsl:apply-templates select="Seller"/></ram:SellerTradeParty>
          <ram:BuyerTradeParty><xsl:apply-templates select="Buyer"/></ram:BuyerTradeParty>
          <xsl:apply-templates select="PurchaseOrderReference"/>
          <xsl:apply-templates select="ContractReference"/>
          <xsl:apply-templates select="AdditionalSupportingDocument"/>
        </ram:ApplicableHeaderTradeAgreement>
        <!-- Mandatory in the XSD even when no delivery information (BG-13) is known. -->
        <ram:ApplicableHeaderTradeDelivery>
          <xsl:for-each select="DeliverToCountryCode">
            <ram:ShipToTradeParty><ram:PostalTradeAddress><ram:CountryID><xsl:value-of select="."/></ram:CountryID></ram:PostalTradeAddress></ram:ShipToTradeParty>
          </xsl:for-each>
          <xsl:for-each select="ActualDeliveryDate">
            <ram:ActualDeliverySupplyChainEvent>
              <ram:OccurrenceDateTime><xsl:call-template name="date-102"><xsl:with-param name="date" select="."/></xsl:call-template></ram:OccurrenceDateTime>
            </ram:ActualDeliverySupplyChainEvent>
          </xsl:for-each>
        </ram:ApplicableHeaderTradeDelivery>
        <ram:ApplicableHeaderTradeSettlement>
          <ram:InvoiceCurrencyCode><xsl:value-of select="CurrencyCode"/></ram:InvoiceCurrencyCode>
          <xsl:apply-templates select="PaymentInstructions"/>
          <xsl:apply-templates select="VatBreakdown"/>
          <xsl:apply-templates select="PaymentDueDate"/>
          <xsl:apply-templates select="DocumentTotals"/>
          <xsl:apply-templates select="PrecedingInvoiceReference"/>
        </ram:ApplicableHeaderTradeSettlement>
      </rsm:SupplyChainTradeTransaction>
    </rsm:CrossIndustryInvoice>
  </xsl:template>

  <!-- YYYY-MM-DD → YYYYMMDD; format-date refuses a non-date rather than copying it. -->
  <xsl:template name="date-102">
    <xsl:param name="date" as="xs:string"/>
    <udt:DateTimeString format="102"><xsl:value-of select="format-date(xs:date($date), '[Y0001][M01][D01]')"/></udt:DateTimeString>
  </xsl:template>

  <xsl:template match="BusinessProcessType">
    <ram:BusinessProcessSpecifiedDocumentContextParameter>
      <ram:ID><xsl:value-of select="."/></ram:ID>
    </ram:BusinessProcessSpecifiedDocumentContextParameter>
  </xsl:template>

  <xsl:template match="BuyerReference">
    <ram:BuyerReference><xsl:value-of select="."/></ram:BuyerReference>
  </xsl:template>

  <xsl:template match="PurchaseOrderReference">
    <ram:BuyerOrderReferencedDocument>
      <ram:IssuerAssignedID><xsl:value-of select="."/></ram:IssuerAssignedID>
    </ram:BuyerOrderReferencedDocument>
  </xsl:template>

  <xsl:template match="ContractReference">
    <ram:ContractReferencedDocument>
      <ram:IssuerAssignedID><xsl:value-of select="."/></ram:IssuerAssignedID>
    </ram:ContractReferencedDocument>
  </xsl:template>

  <!-- TypeCode 916 ("related document"): the code EN 16931 gives a supporting document (BG-24) in CII. -->
  <xsl:template match="AdditionalSupportingDocument">
    <ram:AdditionalReferencedDocument>
      <ram:IssuerAssignedID><xsl:value-of select="SupportingDocumentReference"/></ram:IssuerAssignedID>
      <ram:TypeCode>916</ram:TypeCode>
      <xsl:for-each select="SupportingDocumentDescription"><ram:Name><xsl:value-of select="."/></ram:Name></xsl:for-each>
      <ram:AttachmentBinaryObject mimeCode="{AttachedDocument/@mimeCode}" filename="{AttachedDocument/@filename}"><xsl:value-of select="AttachedDocument"/></ram:AttachmentBinaryObject>
    </ram:AdditionalReferencedDocument>
  </xsl:template>

  <xsl:template match="PrecedingInvoiceReference">
    <ram:InvoiceReferencedDocument>
      <ram:IssuerAssignedID><xsl:value-of select="PrecedingInvoiceNumber"/></ram:IssuerAssignedID>
      <xsl:for-each select="PrecedingInvoiceIssueDate">
        <ram:FormattedIssueDateTime>
          <qdt:DateTimeString format="102"><xsl:value-of select="format-date(xs:date(.), '[Y0001][M01][D01]')"/></qdt:DateTimeString>
        </ram:FormattedIssueDateTime>
      </xsl:for-each>
    </ram:InvoiceReferencedDocument>
  </xsl:template>

  <xsl:template match="Seller | Buyer">
    <ram:GlobalID schemeID="0009"><xsl:value-of select="Siret"/></ram:GlobalID>
    <ram:Name><xsl:value-of select="Name"/></ram:Name>
    <ram:SpecifiedLegalOrganization>
      <ram:ID schemeID="0009"><xsl:value-of select="Siret"/></ram:ID>
    </ram:SpecifiedLegalOrganization>
    <xsl:apply-templates select="PostalAddress"/>
    <xsl:for-each select="VatIdentifier">
      <ram:SpecifiedTaxRegistration><ram:ID schemeID="VA"><xsl:value-of select="."/></ram:ID></ram:SpecifiedTaxRegistration>
    </xsl:for-each>
  </xsl:template>

  <xsl:template match="PostalAddress">
    <ram:PostalTradeAddress>
      <xsl:for-each select="PostCode"><ram:PostcodeCode><xsl:value-of select="."/></ram:PostcodeCode></xsl:for-each>
      <xsl:for-each select="AddressLine1"><ram:LineOne><xsl:value-of select="."/></ram:LineOne></xsl:for-each>
      <xsl:for-each select="AddressLine2"><ram:LineTwo><xsl:value-of select="."/></ram:LineTwo></xsl:for-each>
      <xsl:for-each select="City"><ram:CityName><xsl:value-of select="."/></ram:CityName></xsl:for-each>
      <ram:CountryID><xsl:value-of select="CountryCode"/></ram:CountryID>
    </ram:PostalTradeAddress>
  </xsl:template>

  <xsl:template match="PaymentInstructions">
    <ram:SpecifiedTradeSettlementPaymentMeans>
      <ram:TypeCode><xsl:value-of select="PaymentMeansTypeCode"/></ram:TypeCode>
      <xsl:for-each select="PaymentAccountIdentifier">
        <ram:PayeePartyCreditorFinancialAccount><ram:IBANID><xsl:value-of select="."/></ram:IBANID></ram:PayeePartyCreditorFinancialAccount>
      </xsl:for-each>
    </ram:SpecifiedTradeSettlementPaymentMeans>
  </xsl:template>

  <!-- EN 16931: category O carries no rate (BR-O-05, BR-O-09); the others always do. -->
  <xsl:template name="rate">
    <xsl:param name="code" as="xs:string"/>
    <xsl:param name="rate" as="xs:string?"/>
    <xsl:if test="$code ne 'O'"><ram:RateApplicablePercent><xsl:value-of select="$rate"/></ram:RateApplicablePercent></xsl:if>
  </xsl:template>

  <xsl:template match="VatBreakdown">
    <ram:ApplicableTradeTax>
      <ram:CalculatedAmount><xsl:value-of select="VatCategoryTaxAmount"/></ram:CalculatedAmount>
      <ram:TypeCode>VAT</ram:TypeCode>
      <xsl:for-each select="VatExemptionReasonText"><ram:ExemptionReason><xsl:value-of select="."/></ram:ExemptionReason></xsl:for-each>
      <ram:BasisAmount><xsl:value-of select="VatCategoryTaxableAmount"/></ram:BasisAmount>
      <ram:CategoryCode><xsl:value-of select="VatCategoryCode"/></ram:CategoryCode>
      <xsl:for-each select="VatExemptionReasonCode"><ram:ExemptionReasonCode><xsl:value-of select="."/></ram:ExemptionReasonCode></xsl:for-each>
      <xsl:call-template name="rate">
        <xsl:with-param name="code" select="string(VatCategoryCode)"/>
        <xsl:with-param name="rate" select="string(VatCategoryRate)"/>
      </xsl:call-template>
    </ram:ApplicableTradeTax>
  </xsl:template>

  <xsl:template match="PaymentDueDate">
    <ram:SpecifiedTradePaymentTerms>
      <ram:DueDateDateTime><xsl:call-template name="date-102"><xsl:with-param name="date" select="."/></xsl:call-template></ram:DueDateDateTime>
    </ram:SpecifiedTradePaymentTerms>
  </xsl:template>

  <!-- CII puts currencyID on the VAT total only (CII-DT-031; BR-CO-15 reads it there). -->
  <xsl:template match="DocumentTotals">
    <ram:SpecifiedTradeSettlementHeaderMonetarySummation>
      <ram:LineTotalAmount><xsl:value-of select="SumOfInvoiceLineNetAmount"/></ram:LineTotalAmount>
      <ram:TaxBasisTotalAmount><xsl:value-of select="InvoiceTotalAmountWithoutVat"/></ram:TaxBasisTotalAmount>
      <ram:TaxTotalAmount currencyID="{$currency}"><xsl:value-of select="InvoiceTotalVatAmount"/></ram:TaxTotalAmount>
      <ram:GrandTotalAmount><xsl:value-of select="InvoiceTotalAmountWithVat"/></ram:GrandTotalAmount>
      <ram:DuePayableAmount><xsl:value-of select="AmountDueForPayment"/></ram:DuePayableAmount>
    </ram:SpecifiedTradeSettlementHeaderMonetarySummation>
  </xsl:template>

  <xsl:template match="InvoiceLine">
    <ram:IncludedSupplyChainTradeLineItem>
      <ram:AssociatedDocumentLineDocument>
        <ram:LineID><xsl:value-of select="InvoiceLineIdentifier"/></ram:LineID>
      </ram:AssociatedDocumentLineDocument>
      <ram:SpecifiedTradeProduct>
        <ram:Name><xsl:value-of select="ItemName"/></ram:Name>
      </ram:SpecifiedTradeProduct>
      <ram:SpecifiedLineTradeAgreement>
        <ram:NetPriceProductTradePrice>
          <ram:ChargeAmount><xsl:value-of select="ItemNetPrice"/></ram:ChargeAmount>
        </ram:NetPriceProductTradePrice>
      </ram:SpecifiedLineTradeAgreement>
      <ram:SpecifiedLineTradeDelivery>
        <ram:BilledQuantity unitCode="{InvoicedQuantityUnitOfMeasureCode}"><xsl:value-of select="InvoicedQuantity"/></ram:BilledQuantity>
      </ram:SpecifiedLineTradeDelivery>
      <ram:SpecifiedLineTradeSettlement>
        <ram:ApplicableTradeTax>
          <ram:TypeCode>VAT</ram:TypeCode>
          <ram:CategoryCode><xsl:value-of select="InvoicedItemVatCategoryCode"/></ram:CategoryCode>
          <xsl:call-template name="rate">
            <xsl:with-param name="code" select="string(InvoicedItemVatCategoryCode)"/>
            <xsl:with-param name="rate" select="string(InvoicedItemVatRate)"/>
          </xsl:call-template>
        </ram:ApplicableTradeTax>
        <ram:SpecifiedTradeSettlementLineMonetarySummation>
          <ram:LineTotalAmount><xsl:value-of select="InvoiceLineNetAmount"/></ram:LineTotalAmount>
        </ram:SpecifiedTradeSettlementLineMonetarySummation>
      </ram:SpecifiedLineTradeSettlement>
    </ram:IncludedSupplyChainTradeLineItem>
  </xsl:template>
</xsl:stylesheet>
